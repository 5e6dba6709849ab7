"""The training loop: LR schedule, determinism, and resume after an interrupt."""

from __future__ import annotations

import dataclasses
import logging

import pytest
import torch

from kd.errors import ConfigError
from kd.params import ModelParams, TrainParams
from kd.training.loop import MEGABATCH, Hook, length_grouped, lr_factor, shard_order

TINY = ModelParams(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                   dropout=0.1, epochs=2, lr=1e-2)
TRAIN = TrainParams(batch_size=4, checkpoint_every=2, seed=3)


def test_lr_factor_warms_up_then_decays_to_zero():
    f = [lr_factor(s, warmup_steps=4, total_steps=10) for s in range(11)]
    assert f[:4] == pytest.approx([0.2, 0.4, 0.6, 0.8])
    assert f[4] == pytest.approx(1.0) and f[10] == 0.0
    assert all(a >= b for a, b in zip(f[4:], f[5:]))


def _padded(order, lengths, batch_size):
    """Source tokens a loader of `batch_size` pads `order` to: each batch to its longest member."""
    return sum(max(lengths[i] for i in order[j:j + batch_size]) * len(order[j:j + batch_size])
               for j in range(0, len(order), batch_size))


def test_length_grouped_batches_pad_less_and_keep_every_example_once():
    lengths = torch.randint(20, 200, (1003,), generator=torch.Generator().manual_seed(0)).tolist()
    order = torch.randperm(1003, generator=torch.Generator().manual_seed(1)).tolist()
    grouped = length_grouped(order, lengths, batch_size=8, generator=torch.Generator().manual_seed(2))
    assert sorted(grouped) == list(range(1003))
    assert _padded(grouped, lengths, 8) < 0.85 * _padded(order, lengths, 8)  # random batches: ~25% padding
    assert set(grouped[-3:]) == set(sorted(order[800:], key=lambda i: -lengths[i])[-3:])  # the short batch last
    # Each batch comes from one megabatch, sorted: its longest and shortest are neighbours in that order.
    for j in range(0, 1000, 8):
        batch = grouped[j:j + 8]
        assert len({order.index(i) // (8 * MEGABATCH) for i in batch}) == 1
    again = length_grouped(order, lengths, batch_size=8, generator=torch.Generator().manual_seed(2))
    other = length_grouped(order, lengths, batch_size=8, generator=torch.Generator().manual_seed(3))
    assert grouped == again and grouped != other  # the batch order is the generator's: seeded, not fixed


def test_length_grouped_shards_give_every_process_batches_of_similar_length():
    lengths = [10 * (i % 37) + 5 for i in range(800)]
    kw = dict(seed=0, epoch=1, shuffle=True, lengths=lengths, batch_size=4)
    shards = [shard_order(800, rank=r, world=2, **kw) for r in (0, 1)]
    assert sorted(shards[0] + shards[1]) == list(range(800))
    def mean_span(shard):  # a batch's longest minus its shortest, averaged over the shard's batches
        batches = [shard[j:j + 4] for j in range(0, len(shard), 4)]
        return sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)

    ungrouped = shard_order(800, rank=0, world=2, **{**kw, "lengths": None})
    assert mean_span(ungrouped) > 200  # random batches of 4 from 37 lengths, 5..365
    assert all(mean_span(shard) < 20 for shard in shards)  # sorted megabatches: neighbours in length
    assert shard_order(800, rank=0, world=2, **kw) == shards[0]  # (seed, epoch) fix the order: resumable
    assert shard_order(800, rank=0, world=2, **{**kw, "epoch": 2}) != shards[0]
    plain = shard_order(500, seed=0, epoch=1, shuffle=True)
    assert plain == torch.randperm(500, generator=torch.Generator().manual_seed(0 * 1_000_003 + 1)).tolist()


@pytest.mark.parametrize("side", ["right", "left"])
def test_pad_collator_makes_the_tensors_of_transformers_seq2seq_collator(tiny_data, side):
    """The loop's own collator is a faster drop-in: the same padded tensors, dtypes and -100 labels."""
    from transformers import DataCollatorForSeq2Seq

    from kd.data.tokenization import load_tokenizer
    from kd.training.loop import make_collator

    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    tokenizer.padding_side = side
    rows = [{"input_ids": [5, 6, 7, 1], "attention_mask": [1, 1, 1, 1], "labels": [9, 1]},
            {"input_ids": [8, 1], "attention_mask": [1, 1], "labels": [4, 3, 2, 1]},
            {"input_ids": [1], "attention_mask": [1], "labels": [1]}]
    ours = make_collator(tokenizer)([dict(r) for r in rows])
    theirs = DataCollatorForSeq2Seq(tokenizer, label_pad_token_id=-100, return_tensors="pt")([dict(r) for r in rows])
    assert set(ours) == set(theirs)
    for key in theirs:
        assert ours[key].dtype == theirs[key].dtype and torch.equal(ours[key], theirs[key]), key
    assert (ours["labels"] == -100).sum() == 5


def test_attention_auto_is_eager_on_cpu_and_sdpa_on_cuda():
    from kd.models.modeling import resolve_attention

    assert resolve_attention("auto", torch.device("cpu")) == "eager"
    assert resolve_attention("auto", torch.device("cuda")) == "sdpa"
    assert resolve_attention("sdpa", torch.device("cpu")) == "sdpa"
    with pytest.raises(ConfigError, match="train.attn_implementation"):
        TrainParams(attn_implementation="flash")


class Interrupt(Exception):
    pass


class CrashAt(Hook):
    """Simulates a crash right after optimizer step `at`, before that step's checkpoint."""

    def __init__(self, at: int):
        self.at = at

    def on_step_end(self, loop, logs):
        if loop.state.step == self.at:
            raise Interrupt


def _train(tiny_data, tmp_path, name, **kw):
    from kd.teacher.train import train_teacher

    return train_teacher(spec=kw.pop("spec", TINY), train=kw.pop("train", TRAIN),
                         tokenizer_dir=tiny_data / "tokenizer",
                         tokenized_dir=tiny_data / "tokenized", out_dir=tmp_path / name / "model",
                         ckpt_dir=tmp_path / name / "ckpt", live_dir=tmp_path / name / "live", **kw)


def _weights(path):
    from safetensors.torch import load_file

    return load_file(str(path / "model.safetensors"))


def test_same_seed_same_weights(tiny_data, tmp_path):
    a = _train(tiny_data, tmp_path, "a")
    b = _train(tiny_data, tmp_path, "b")
    assert a.best_val_loss == b.best_val_loss
    wa, wb = _weights(tmp_path / "a" / "model"), _weights(tmp_path / "b" / "model")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.mark.parametrize("group_by_length", [False, True])
def test_interrupted_run_resumes_to_identical_weights(tiny_data, tmp_path, group_by_length):
    train = dataclasses.replace(TRAIN, group_by_length=group_by_length)
    full = _train(tiny_data, tmp_path, "full", train=train)

    with pytest.raises(Interrupt):  # step 3: after the step-2 checkpoint, mid-epoch
        _train(tiny_data, tmp_path, "cut", hooks=[CrashAt(3)], train=train)
    assert not (tmp_path / "cut" / "model").exists()  # nothing half-written
    assert (tmp_path / "cut" / "ckpt" / "last" / "state.json").is_file()
    resumed = _train(tiny_data, tmp_path, "cut", train=train)
    assert resumed.resumed_from_step == 2
    assert resumed.best_val_loss == full.best_val_loss
    wf, wr = _weights(tmp_path / "full" / "model"), _weights(tmp_path / "cut" / "model")
    assert all(torch.equal(wf[k], wr[k]) for k in wf)
    assert not (tmp_path / "cut" / "ckpt" / "last").exists()  # finished: a rerun starts fresh


def test_checkpoint_of_other_params_is_not_resumed(tiny_data, tmp_path, caplog):
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "x", hooks=[CrashAt(3)])
    other = TrainParams(batch_size=4, checkpoint_every=2, seed=4)
    with caplog.at_level(logging.WARNING, logger="kd.training.loop"):
        result = _train(tiny_data, tmp_path, "x", train=other)
    assert result.resumed_from_step == 0
    assert "ignoring checkpoint" in caplog.text


def test_explicit_resume_path_must_be_a_checkpoint(tiny_data, tmp_path):
    with pytest.raises(ConfigError, match="not a checkpoint"):
        _train(tiny_data, tmp_path, "y", resume_from=tmp_path)


def test_checkpoint_files_load_without_unpickling(tiny_data, tmp_path):
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "z", hooks=[CrashAt(3)])  # after the step-2 checkpoint
    last = tmp_path / "z" / "ckpt" / "last"
    for f in ("optimizer.pt", "rng.pt"):
        torch.load(last / f, weights_only=True)  # raises if anything but tensors/containers were saved
    assert {p.name for p in last.iterdir()} >= {"model.safetensors", "best.safetensors", "state.json"}


# ----------------------------------------------------------------------------- train.select_by

SELECT = TrainParams(batch_size=4, checkpoint_every=100, seed=3, select_by="rougeLsum", select_samples=8,
                     select_max_new_tokens=16)
FOUR_EPOCHS = ModelParams(d_model=16, d_ff=32, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                          dropout=0.1, epochs=4, lr=1e-2)
STEPS_PER_EPOCH = 6  # 24 training records in batches of 4


class StubScorer:
    """Scores the k-th validation `scores[k]`; records the rows and the model's weights it was given.
    It leaves the model in eval mode: the loop must put it back in train mode (dropout)."""

    name = "rougeLsum"

    def __init__(self, scores):
        self.scores, self.rows, self.weights = list(scores), [], []

    def __call__(self, model, val_ds):
        model.eval()
        self.rows.append(len(val_ds))
        self.weights.append({k: v.detach().clone() for k, v in model.state_dict().items()})
        return self.scores[len(self.weights) - 1]


def _tsv(path) -> list[tuple[int, float]]:
    rows = [line.split("\t") for line in path.read_text().splitlines()[1:]]
    return [(int(r[0]), float(r[1])) for r in rows]


def _same(a: dict, b: dict) -> bool:
    return all(torch.equal(a[k], b[k]) for k in a)


def test_select_by_rougeLsum_keeps_the_best_scoring_epoch_not_the_lowest_loss(tiny_data, tmp_path, monkeypatch):
    import json

    scores = [1.0, 3.0, 3.0, 2.0]  # best: epoch 1 (epoch 2 ties it: the earlier one stays)
    stub = StubScorer(scores)
    monkeypatch.setattr("kd.training.run.make_scorer", lambda train, tokenizer: stub)
    result = _train(tiny_data, tmp_path, "s", spec=FOUR_EPOCHS, train=SELECT)

    losses = [h["val_loss"] for h in result.history]
    assert [h["val_rougeLsum"] for h in result.history] == scores
    assert min(range(4), key=losses.__getitem__) != 1  # the loss would have kept another epoch
    assert (result.select_by, result.best_epoch, result.best_score) == ("rougeLsum", 1, 3.0)
    assert result.best_val_loss == losses[1]  # the loss of the selected epoch
    assert stub.rows == [8] * 4  # the whole validation split, every epoch
    saved = _weights(tmp_path / "s" / "model")
    assert _same(saved, stub.weights[1]) and not _same(saved, stub.weights[3])

    live = tmp_path / "s" / "live"
    steps = [STEPS_PER_EPOCH * (e + 1) for e in range(4)]
    assert _tsv(live / "plots" / "metrics" / "val" / "rougeLsum.tsv") == list(zip(steps, scores))
    assert _tsv(live / "plots" / "metrics" / "val" / "loss.tsv") == list(zip(steps, losses))
    summary = json.loads((live / "metrics.json").read_text())
    assert (summary["select_by"], summary["best_score"], summary["best_epoch"]) == ("rougeLsum", 3.0, 1)
    assert summary["best_val_loss"] == losses[1]


def test_select_by_loss_is_the_default_and_generates_nothing(tiny_data, tmp_path, monkeypatch):
    import json

    from transformers import T5ForConditionalGeneration

    def no_generation(*args, **kwargs):
        raise AssertionError("select_by: loss must not generate")

    # The stub's run first: the same training, scored; it shows the scoring does not disturb training.
    stub = StubScorer([0.0] * 4)
    with monkeypatch.context() as m:
        m.setattr("kd.training.run.make_scorer", lambda train, tokenizer: stub)
        scored = _train(tiny_data, tmp_path, "scored", spec=FOUR_EPOCHS, train=SELECT)
    assert TrainParams().select_by == "loss"
    monkeypatch.setattr(T5ForConditionalGeneration, "generate", no_generation)
    monkeypatch.setattr("kd.metrics.rouge.rouge_scores", no_generation)
    result = _train(tiny_data, tmp_path, "loss", spec=FOUR_EPOCHS,
                    train=TrainParams(batch_size=4, checkpoint_every=100, seed=3))

    assert all(set(h) == {"epoch", "step", "val_loss"} for h in result.history)
    losses = [h["val_loss"] for h in result.history]
    assert losses == [h["val_loss"] for h in scored.history]  # same trajectory, bit for bit
    best = min(range(4), key=losses.__getitem__)
    assert (result.select_by, result.best_epoch, result.best_score) == ("loss", best, None)
    assert result.best_val_loss == losses[best]
    assert _same(_weights(tmp_path / "loss" / "model"), stub.weights[best])  # that epoch's weights
    live = tmp_path / "loss" / "live"
    assert not (live / "plots" / "metrics" / "val" / "rougeLsum.tsv").exists()
    summary = json.loads((live / "metrics.json").read_text())
    assert summary["select_by"] == "loss" and "best_score" not in summary


def _scorer_setup(tiny_data, **kw):
    from kd.models.modeling import build_model
    from kd.training.run import load_tokenized, make_scorer
    from kd.data.tokenization import load_tokenizer

    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    val = load_tokenized(tiny_data / "tokenized")["validation"]
    model = build_model(TINY, tokenizer, seed=0, section="teacher").train()
    params = TrainParams(batch_size=3, select_by="rougeLsum", **kw)
    return make_scorer(params, tokenizer), model, tokenizer, val


class GenerateSpy:
    """Wraps `model.generate`: records each batch's real input rows and outputs, and how it was called."""

    def __init__(self, model, fake=None):
        self.real, self.fake, self.inputs, self.outputs, self.calls = model.generate, fake, [], [], []
        model.generate = self

    def __call__(self, input_ids, attention_mask, generation_config, **kwargs):
        self.calls.append(dict(num_beams=generation_config.num_beams, do_sample=generation_config.do_sample,
                               max_new_tokens=generation_config.max_new_tokens, training=self.real.__self__.training,
                               inference=torch.is_inference_mode_enabled(), batch=len(input_ids)))
        self.inputs += [ids[mask.bool()].tolist() for ids, mask in zip(input_ids, attention_mask)]
        out = self.fake(len(self.outputs), len(input_ids)) if self.fake else \
            self.real(input_ids=input_ids, attention_mask=attention_mask, generation_config=generation_config,
                      **kwargs)
        self.outputs += out.tolist()
        return out


def test_rougeLsum_scorer_generates_the_first_n_validation_examples_and_scores_them(tiny_data):
    from kd.metrics.rouge import rouge_scores

    scorer, model, tokenizer, val = _scorer_setup(tiny_data, select_samples=5, select_num_beams=2,
                                                  select_max_new_tokens=6)
    spy = GenerateSpy(model)
    score = scorer(model, val)

    assert spy.inputs == val["input_ids"][:5]  # exactly the first 5, in order, unpadded as tokenized
    assert [c["batch"] for c in spy.calls] == [3, 2]  # train.batch_size at a time
    assert all(c["num_beams"] == 2 and c["max_new_tokens"] == 6 and c["do_sample"] is False
               and not c["training"] and c["inference"] for c in spy.calls)
    assert model.training  # back in train mode
    predictions = [t.strip() for t in tokenizer.batch_decode(spy.outputs, skip_special_tokens=True)]
    references = [t.strip() for t in tokenizer.batch_decode(val["labels"][:5], skip_special_tokens=True)]
    assert score == rouge_scores(predictions, references)["rougeLsum"]


def test_rougeLsum_scorer_caps_at_the_split_and_scores_against_the_decoded_labels(tiny_data):
    from kd.data.builtin import generate
    from kd.metrics.rouge import rouge_scores, split_sentences
    from kd.data.tokenization import tokenize_records

    scorer, model, tokenizer, _ = _scorer_setup(tiny_data, select_samples=64)
    # References of several sentences (long enough labels), where rougeLsum and rougeL differ.
    val = tokenize_records(generate("validation", 8, 0), tokenizer, prefix="summarize: ", max_source_length=48,
                           max_target_length=128)
    references = [tokenizer.decode(ids, skip_special_tokens=True) for ids in val["labels"]]
    # A "model" that writes each reference's sentences in reverse order, plus one of its own.
    written = [" ".join(reversed(split_sentences(r))) + " Nothing else happened." for r in references]

    def reversed_references(start, n):
        rows = [[0] + tokenizer(text_target=t)["input_ids"] for t in written[start:start + n]]
        width = max(map(len, rows))
        return torch.tensor([r + [0] * (width - len(r)) for r in rows])

    spy = GenerateSpy(model, fake=reversed_references)
    score = scorer(model, val)
    assert spy.inputs == val["input_ids"] and len(val) == 8  # min(64, 8): the whole split
    assert [c["num_beams"] for c in spy.calls] == [1, 1, 1] and spy.calls[0]["max_new_tokens"] == 64
    expected = rouge_scores(tokenizer.batch_decode(spy.outputs, skip_special_tokens=True), references)
    assert 0 < score < 100 and score == expected["rougeLsum"] != expected["rougeL"]


def test_a_resumed_run_selects_by_rougeLsum_like_an_uninterrupted_one(tiny_data, tmp_path):
    """The real scorer, a run killed after epoch 3's checkpoint (the best so far is in it), resumed."""
    import json

    from kd.training.checkpoint import find_last, read_state

    spec = ModelParams(d_model=32, d_ff=64, d_kv=8, num_layers=1, num_decoder_layers=1, num_heads=2,
                       dropout=0.1, epochs=5, lr=2e-2)
    full = _train(tiny_data, tmp_path, "full", spec=spec, train=SELECT)
    kill = 4 * STEPS_PER_EPOCH
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "cut", spec=spec, train=SELECT, hooks=[CrashAt(kill + 1)])
    saved = read_state(find_last(tmp_path / "cut" / "ckpt"))
    so_far = [h["val_rougeLsum"] for h in full.history[:4]]
    assert saved["step"] == kill and saved["history"] == full.history[:4]
    assert (saved["select_by"], saved["best_score"], saved["best_epoch"]) == (
        "rougeLsum", max(so_far), so_far.index(max(so_far)))

    resumed = _train(tiny_data, tmp_path, "cut", spec=spec, train=SELECT)
    assert resumed.resumed_from_step == kill
    assert resumed.history == full.history and all("val_rougeLsum" in h for h in full.history)
    assert (resumed.best_epoch, resumed.best_score, resumed.best_val_loss) == \
        (full.best_epoch, full.best_score, full.best_val_loss)
    assert _same(_weights(tmp_path / "full" / "model"), _weights(tmp_path / "cut" / "model"))
    rouge = "plots/metrics/val/rougeLsum.tsv"
    assert (tmp_path / "cut" / "live" / rouge).read_text() == (tmp_path / "full" / "live" / rouge).read_text()
    summaries = [json.loads((tmp_path / run / "live" / "metrics.json").read_text()) for run in ("full", "cut")]
    for s in summaries:
        s.pop("train_seconds")
    assert summaries[0] == summaries[1] and summaries[0]["best_score"] == full.best_score


def test_resuming_a_checkpoint_that_selected_otherwise_restarts_the_selection(tiny_data, tmp_path, monkeypatch,
                                                                               caplog):
    with pytest.raises(Interrupt):  # a loss-selected run, killed after epoch 0's checkpoint
        _train(tiny_data, tmp_path, "loss", spec=FOUR_EPOCHS, train=TrainParams(
            batch_size=4, checkpoint_every=100, seed=3), hooks=[CrashAt(STEPS_PER_EPOCH + 1)])
    stub = StubScorer([5.0, 2.0, 1.0])  # the resumed epochs 1..3
    monkeypatch.setattr("kd.training.run.make_scorer", lambda train, tokenizer: stub)
    with caplog.at_level(logging.WARNING, logger="kd.training.loop"):
        result = _train(tiny_data, tmp_path, "score", spec=FOUR_EPOCHS, train=SELECT,
                        resume_from=tmp_path / "loss" / "ckpt" / "last")
    assert "selected epochs by loss, this run by rougeLsum" in caplog.text
    assert result.resumed_from_step == STEPS_PER_EPOCH and "val_rougeLsum" not in result.history[0]
    assert (result.select_by, result.best_epoch, result.best_score) == ("rougeLsum", 1, 5.0)
    assert result.best_val_loss == result.history[1]["val_loss"]


def test_a_models_own_seed_overrides_train_seed_for_that_model_only():
    """student.seed varies the students' training alone (kd.seeds), the teacher keeps train.seed."""
    from kd.params import KDParams, ModelParams, StudentRecipe, TrainParams
    from kd.students.recipe import resolve

    train = TrainParams(seed=0)
    assert ModelParams().training(train) is train
    assert ModelParams(seed=3).training(train).seed == 3
    kd = KDParams(students={"b": StudentRecipe(teacher_input="models/teacher", targets="data/tokenized")})
    assert resolve("b", kd, ModelParams(seed=5), train).train.seed == 5
    assert resolve("b", kd, ModelParams(), train).train.seed == 0


def test_validations_spread_checks_over_the_step_cap_and_patience_stops_early(tiny_data, tmp_path, monkeypatch):
    """validations: 10 over a 20-step cap checks every 2 steps, not at pass ends (6 steps); after `patience`
    checks without a gain training stops, keeps the best check's weights and says it stopped early."""
    import dataclasses
    import json

    scores = [1.0, 2.0, 3.0, 2.5, 3.0, 1.0, 9.0]  # best at the 3rd check (step 6); a tie is no gain
    stub = StubScorer(scores)
    monkeypatch.setattr("kd.training.run.make_scorer", lambda train, tokenizer: stub)
    spec = dataclasses.replace(TINY, steps=20, validations=10, patience=3)
    result = _train(tiny_data, tmp_path, "p", spec=spec, train=SELECT)
    assert [h["step"] for h in result.history] == [2, 4, 6, 8, 10, 12]  # stopped: the 7th check never ran
    assert (result.best_step, result.stopped_early, result.steps, result.step_cap) == (6, True, 12, 20)
    assert _same(_weights(tmp_path / "p" / "model"), stub.weights[2])
    summary = json.loads((tmp_path / "p" / "live" / "metrics.json").read_text())
    assert (summary["best_step"], summary["steps"], summary["step_cap"]) == (6, 12, 20)
    assert summary["stopped_early"] is True and summary["converged"] is True
    assert summary["examples_seen"] == 12 * 4 and summary["threads"] == torch.get_num_threads()


def test_a_student_that_reaches_its_cap_is_not_converged(tiny_data, tmp_path, monkeypatch):
    import dataclasses
    import json

    stub = StubScorer([float(k) for k in range(10)])  # still improving at every check
    monkeypatch.setattr("kd.training.run.make_scorer", lambda train, tokenizer: stub)
    spec = dataclasses.replace(TINY, steps=10, validations=5, patience=2)
    result = _train(tiny_data, tmp_path, "c", spec=spec, train=SELECT)
    assert [h["step"] for h in result.history] == [2, 4, 6, 8, 10]
    assert (result.best_step, result.stopped_early) == (10, False)
    summary = json.loads((tmp_path / "c" / "live" / "metrics.json").read_text())
    assert summary["converged"] is False and summary["steps"] == summary["step_cap"] == 10


def test_an_interrupted_early_stopping_run_resumes_to_the_same_stop(tiny_data, tmp_path, monkeypatch):
    """The count of checks without a gain is part of the checkpoint: a run killed between checks stops at the
    same step with the same weights as an uninterrupted one."""
    import dataclasses

    spec = dataclasses.replace(TINY, steps=60, validations=30, patience=2, lr=0.1)  # overfits: stops near 28
    full = _train(tiny_data, tmp_path, "full", spec=spec)
    assert full.stopped_early and full.best_step + 1 < full.steps
    with pytest.raises(Interrupt):
        _train(tiny_data, tmp_path, "cut", spec=spec, hooks=[CrashAt(full.best_step + 1)])
    resumed = _train(tiny_data, tmp_path, "cut", spec=spec)
    assert (resumed.steps, resumed.best_step, resumed.stopped_early) == (full.steps, full.best_step,
                                                                          full.stopped_early)
    assert _same(_weights(tmp_path / "cut" / "model"), _weights(tmp_path / "full" / "model"))


def test_validations_need_a_step_cap_and_a_models_batch_size_overrides_train():
    from kd.errors import ConfigError

    with pytest.raises(ConfigError, match=r"student\.validations spreads checks over a step cap"):
        ModelParams(validations=10).check("student")
    assert ModelParams(batch_size=32).training(TRAIN).batch_size == 32
    assert ModelParams().training(TRAIN) == TRAIN
