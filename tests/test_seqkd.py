"""Sequence-level KD: the teacher_generate stage (the splits and number of summaries its parameters name;
deterministic, resumable in shards, checked by the students) and a recipe's `targets` (references, the
teacher's summaries of the labelled set and the unlabeled pool, a share of each, both, or any system's
summaries from a file)."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT, TINY_RECORDS

from kd.errors import ConfigError
from kd.params import ModelParams, TeacherGenerateParams
from kd.teacher.targets import read_targets, teacher_rows, training_split, with_summaries

TEACHER = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "epochs": 1, "lr": 0.01}
GENERATE = {"num_beams": 2, "max_new_tokens": 10, "batch_size": 4, "shard_size": 8}  # 24 records: 3 shards


@pytest.fixture(scope="module")
def setup(tiny_data, tmp_path_factory):
    """A (random) tiny teacher saved as the train_teacher stage saves one, and the raw training split."""
    from kd.data.builtin import generate
    from kd.data.sources import write_jsonl_atomic
    from kd.models.modeling import build_model
    from kd.training.run import save_model_dir
    from kd.data.tokenization import load_tokenizer

    root = tmp_path_factory.mktemp("seqkd")
    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    save_model_dir(build_model(ModelParams(**TEACHER), tokenizer, seed=1, section="teacher"), tokenizer,
                   root / "teacher")
    write_jsonl_atomic(generate("train", TINY_RECORDS, 0), root / "train.jsonl")  # as conftest's tiny_data
    return root


def _generate(setup, tiny_data, out, work, **params):
    from kd.teacher.generate import generate_targets

    return generate_targets(params=TeacherGenerateParams(**(GENERATE | params)), teacher_dir=setup / "teacher",
                            tokenizer_dir=tiny_data / "tokenizer", tokenized_dir=tiny_data / "tokenized",
                            raw_train=setup / "train.jsonl", out_dir=out, work_dir=work)


def _digest(directory) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(directory.iterdir())}


@pytest.fixture(scope="module")
def targets(setup, tiny_data):
    out = setup / "targets"
    _generate(setup, tiny_data, out, setup / "work")
    return out


def test_stage_output_is_identical_across_runs_and_complete(setup, tiny_data, targets, tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"teacher_generate": GENERATE}))
    out = tmp_path / "again"
    run = subprocess.run([sys.executable, "-m", "stages.teacher_generate", "--params", str(params),
                          "--teacher", str(setup / "teacher"), "--tokenizer", str(tiny_data / "tokenizer"),
                          "--tokenized", str(tiny_data / "tokenized"), "--raw-train", str(setup / "train.jsonl"),
                          "--out", str(out), "--work-dir", str(tmp_path / "work"), "--log-dir", str(tmp_path),
                          "--cost-out", str(tmp_path / "cost.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _digest(out) == _digest(targets)  # the stage script and a second run: byte-identical
    assert not (tmp_path / "work").exists()  # finished: the shards are gone
    rows = [json.loads(line) for line in (targets / "train.jsonl").read_text().splitlines()]
    manifest = json.loads((targets / "manifest.json").read_text())
    assert len(rows) == manifest["splits"]["train"]["n_examples"] == TINY_RECORDS
    assert list(manifest["splits"]) == ["train"] and not (targets / "unlabeled.jsonl").exists()
    assert manifest["num_beams"] == 2 and manifest["max_new_tokens"] == 10
    assert 0 <= manifest["train_rouge"]["rougeL"] <= 100
    for row in rows:  # labels are the ids of the summary: no decoder start, no padding, <= max_new_tokens
        (labels,) = row["labels"]
        assert 0 < len(labels) <= 10 and 0 not in labels and len(row["summaries"]) == 1
    assert "teacher on the labelled split: rouge1" in (tmp_path / "teacher_generate.log").read_text()


def test_an_interrupted_run_resumes_from_its_last_shard(setup, tiny_data, targets, tmp_path, monkeypatch, caplog):
    import kd.teacher.generate as tg

    real, calls = tg.generate_labels, []

    def crash_in_the_second_shard(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 3:  # shard 1 is 2 batches of 4: the first batch of shard 2 crashes
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(tg, "generate_labels", crash_in_the_second_shard)
    with pytest.raises(RuntimeError, match="killed"):
        _generate(setup, tiny_data, tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "out").exists() and len(list((tmp_path / "work" / "train").glob("shard-*.jsonl"))) == 1
    monkeypatch.setattr(tg, "generate_labels", real)
    counted = []
    monkeypatch.setattr(tg, "generate_labels", lambda *a, **k: counted.append(1) or real(*a, **k))
    with caplog.at_level("INFO"):
        _generate(setup, tiny_data, tmp_path / "out", tmp_path / "work")
    assert "resuming: 1 finished shard(s)" in caplog.text
    assert len(counted) == 4  # shards 2 and 3 only, 2 batches each
    assert _digest(tmp_path / "out") == _digest(targets)


def test_shards_of_other_settings_are_not_reused(setup, tiny_data, targets, tmp_path, caplog):
    work = tmp_path / "work"
    (work / "train").mkdir(parents=True)
    (work / "train" / "run.json").write_text(json.dumps({"run": "someone else"}))
    (work / "train" / "shard-000000000.jsonl").write_text('{"id": "x", "labels": [[5]], "summaries": ["stale"]}\n')
    _generate(setup, tiny_data, tmp_path / "out", work)
    assert _digest(tmp_path / "out") == _digest(targets)


def _identity(setup, tiny_data, **change):
    from kd.training.run import file_digest, load_tokenized
    from kd.teacher.cache import cache_identity
    from kd.data.tokenization import load_tokenizer

    identity = cache_identity(teacher_id=file_digest(setup / "teacher" / "model.safetensors"),
                              tokenizer=load_tokenizer(str(tiny_data / "tokenizer")),
                              train_ds=load_tokenized(tiny_data / "tokenized")["train"])
    return identity | change


def test_students_refuse_targets_of_another_teacher(setup, tiny_data, targets):
    assert len(read_targets(targets, split="train", per_article=1, identity=_identity(setup, tiny_data))) == TINY_RECORDS
    with pytest.raises(ConfigError, match="made for another teacher.*teacher: made for .* this run has 'other'"):
        read_targets(targets, split="train", per_article=1, identity=_identity(setup, tiny_data, teacher="other"))
    with pytest.raises(ConfigError, match="run the teacher_generate stage first"):
        read_targets(setup / "nowhere", split="train", per_article=1, identity={})


def test_teacher_share_and_both_targets():
    import datasets

    train = datasets.Dataset.from_dict({"input_ids": [[5, 1]] * 10, "labels": [[7, i, 1] for i in range(10)]})
    teacher = [[8, i, i, 1] for i in range(10)]
    pieces = {"train": with_summaries(train, [[t] for t in teacher])}
    assert training_split(train, pieces, share=1.0, with_references=False, seed=0)["labels"] == teacher
    half = training_split(train, pieces, share=0.5, with_references=False, seed=3,
                          train_summaries=[[t] for t in teacher])["labels"]
    chosen = teacher_rows(10, 0.5, 3)
    assert len(chosen) == 5 and chosen != teacher_rows(10, 0.5, 4)  # the seed picks them
    assert [i for i, lab in enumerate(half) if lab[0] == 8] == chosen
    assert all(half[i] == train["labels"][i] for i in range(10) if i not in chosen)
    both = training_split(train, pieces, share=1.0, with_references=True, seed=0)
    assert list(both["labels"]) == list(train["labels"]) + teacher
    assert list(both["input_ids"]) == list(train["input_ids"]) * 2
    # a share of train on summaries keeps the other splits' summaries whole
    pool = datasets.Dataset.from_dict({"input_ids": [[6, 1]] * 3, "labels": [[]] * 3}, features=train.features)
    mixed = training_split(train, {**pieces, "unlabeled": with_summaries(pool, [[[9, 1]]] * 3)}, share=0.5, seed=3,
                           train_summaries=[[t] for t in teacher])
    assert list(mixed["labels"]) == list(half) + [[9, 1]] * 3


def test_the_tokenized_split_on_disk_is_never_written(tiny_data, tmp_path):
    """The distill stage must not leave files (datasets' cache-*.arrow) in the tokenize stage's output:
    DVC would see the output changed and rerun everything downstream."""
    import shutil

    from kd.training.run import load_tokenized

    copy = tmp_path / "tokenized"
    shutil.copytree(tiny_data / "tokenized", copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    train = load_tokenized(copy)["train"]
    teacher = [[[9, 1]]] * len(train)
    for kw in ({"share": 1.0, "with_references": False}, {"share": 0.5, "with_references": False},
               {"share": 1.0, "with_references": True}):
        out = training_split(train, {"train": with_summaries(train, teacher)}, seed=0, train_summaries=teacher, **kw)
        assert out.features == train.features
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


def _student(tiny_data, tmp_path, setup, targets_dir, name, **recipe):
    from kd.students.distill import distill_student
    from kd.params import KDParams, TrainParams, parse
    from kd.students.recipe import resolve

    kd = parse(KDParams, {"students": {name: {"teacher_input": "models/teacher", "targets": "data/tokenized",
                                              "losses": {}, **recipe}}}, "kd")
    student = ModelParams(**TEACHER | {"epochs": 1})
    r = resolve(name, kd, student, TrainParams(batch_size=4, checkpoint_every=100))
    distill_student(recipe=r, teacher_dir=setup / "teacher", tokenizer_dir=tiny_data / "tokenizer",
                    tokenized_dir=tiny_data / "tokenized", out_dir=tmp_path / name, ckpt_dir=tmp_path / f"ck_{name}",
                    live_dir=tmp_path / f"live_{name}", teacher_targets_dir=targets_dir)
    from safetensors.torch import load_file

    return load_file(str(tmp_path / name / "model.safetensors"))


def test_teacher_targets_equal_to_the_references_train_the_baselines_weights(setup, tiny_data, targets, tmp_path):
    """The targets machinery changes nothing but the labels: a 'teacher' whose summaries are the
    references trains the label-only baseline's weights; the real teacher summaries do not."""
    from kd.training.run import load_tokenized

    copy = tmp_path / "refs_as_targets"
    copy.mkdir()
    (copy / "manifest.json").write_text((targets / "manifest.json").read_text())
    refs = load_tokenized(tiny_data / "tokenized")["train"]
    (copy / "train.jsonl").write_text("".join(json.dumps({"id": i, "labels": [lab], "summaries": [""]}) + "\n"
                                              for i, lab in zip(refs["id"], refs["labels"])))
    baseline = _student(tiny_data, tmp_path, setup, copy, "baseline")
    same = _student(tiny_data, tmp_path, setup, copy, "refs", targets="data/teacher_targets")
    seqkd = _student(tiny_data, tmp_path, setup, targets, "seqkd", targets="data/teacher_targets")
    assert all(torch.equal(baseline[k], same[k]) for k in baseline)
    assert not all(torch.equal(baseline[k], seqkd[k]) for k in baseline)


def test_a_combination_trains_on_teacher_targets_with_a_live_loss(setup, tiny_data, targets, tmp_path):
    """seqkd_attention's shape (the README's combination): the teacher's summaries as targets and the
    attention loss from the live teacher, both at work: its weights differ from seqkd's, and the saved
    recipe records both."""
    seqkd = _student(tiny_data, tmp_path, setup, targets, "seqkd", targets="data/teacher_targets")
    combo = _student(tiny_data, tmp_path, setup, targets, "combo", targets="data/teacher_targets",
                     losses={"attention": {"weight": 1.0}})
    assert not all(torch.equal(seqkd[k], combo[k]) for k in seqkd)
    recipe = json.loads((tmp_path / "combo" / "recipe.json").read_text())
    assert recipe["targets"] == "data/teacher_targets" and list(recipe["losses"]) == ["attention"]


# --- the unlabeled pool, several summaries per article, any system's summaries --------------------------


@pytest.fixture(scope="module")
def pooled(tiny_data, tmp_path_factory):
    """tiny_data's tokenized splits plus an unlabeled pool of 12 articles (no references), as the tokenize
    stage writes them."""
    from kd.data.builtin import generate
    from kd.data.tokenization import Encoder, load_tokenizer, write_tokenized

    root = tmp_path_factory.mktemp("pooled")
    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    splits = {s: generate(s, n, 0) for s, n in (("train", TINY_RECORDS), ("validation", 8), ("test", 8))}
    splits["unlabeled"] = [{"id": r["id"], "article": r["article"]} for r in generate("unlabeled", 12, 0)]
    write_tokenized(splits, root / "tokenized", Encoder(tokenizer, "summarize: ", 48, 16))
    return root


def _generate_pooled(setup, tiny_data, pooled, out, **params):
    from kd.teacher.generate import generate_targets

    return generate_targets(params=TeacherGenerateParams(**(GENERATE | params)), teacher_dir=setup / "teacher",
                            tokenizer_dir=tiny_data / "tokenizer", tokenized_dir=pooled / "tokenized",
                            raw_train=setup / "train.jsonl", out_dir=out, work_dir=out.parent / f"work_{out.name}")


def test_generate_labels_the_splits_it_names_with_distinct_beams(setup, tiny_data, pooled, tmp_path):
    out = tmp_path / "beams"
    manifest = _generate_pooled(setup, tiny_data, pooled, out, splits=["train", "unlabeled"], num_return_sequences=2)
    assert manifest["splits"]["unlabeled"]["n_examples"] == 12 and manifest["num_return_sequences"] == 2
    unlabeled = [json.loads(line) for line in (out / "unlabeled.jsonl").read_text().splitlines()]
    assert [r["id"] for r in unlabeled] == [f"builtin-unlabeled-0-{i:06d}" for i in range(12)]
    for row in unlabeled:  # the two best beams, each a summary of its own
        assert len(row["labels"]) == 2 and row["labels"][0] != row["labels"][1]
    with pytest.raises(ConfigError, match=r"teacher_generate\.splits names 'unlabeled', but the data has no such pool"):
        _generate(setup, tiny_data, tmp_path / "none", tmp_path / "w", splits=["unlabeled"])
    with pytest.raises(ConfigError, match=r"teacher_generate\.num_return_sequences must be <= num_beams"):
        TeacherGenerateParams(num_beams=2, num_return_sequences=3)


def test_sampled_summaries_follow_their_seed(setup, tiny_data, pooled, tmp_path):
    def sampled(name: str, seed: int) -> dict[str, str]:
        _generate_pooled(setup, tiny_data, pooled, tmp_path / name, splits=["unlabeled"], do_sample=True,
                         num_return_sequences=2, seed=seed)
        return _digest(tmp_path / name)

    runs = {name: sampled(name, seed) for name, seed in (("a", 1), ("b", 1), ("c", 2))}
    assert runs["a"] == runs["b"] and runs["a"]["unlabeled.jsonl"] != runs["c"]["unlabeled.jsonl"]


def _pooled_student(tiny_data, pooled, tmp_path, setup, targets_dir, name, student=None, **recipe):
    from kd.students.distill import distill_student
    from kd.params import KDParams, TrainParams, parse
    from kd.students.recipe import resolve

    kd = parse(KDParams, {"students": {name: {"teacher_input": "models/teacher", "targets": "data/tokenized",
                                              "losses": {}, **recipe}}}, "kd")
    r = resolve(name, kd, ModelParams(**TEACHER | {"epochs": 1} | (student or {})),
                TrainParams(batch_size=4, checkpoint_every=100))
    distill_student(recipe=r, teacher_dir=setup / "teacher", tokenizer_dir=tiny_data / "tokenizer",
                    tokenized_dir=pooled / "tokenized", out_dir=tmp_path / name, ckpt_dir=tmp_path / f"ck_{name}",
                    live_dir=tmp_path / f"live_{name}", teacher_targets_dir=targets_dir, max_target_length=16)
    from safetensors.torch import load_file

    summary = json.loads((tmp_path / f"live_{name}" / "metrics.json").read_text())
    return load_file(str(tmp_path / name / "model.safetensors")), summary


def test_a_recipe_asking_for_text_nobody_generated_names_the_keys(setup, tiny_data, pooled, tmp_path):
    out = tmp_path / "train_only"
    _generate_pooled(setup, tiny_data, pooled, out)
    with pytest.raises(ConfigError, match=r"kd\.students\.s\.target_splits asks for the teacher's summaries of "
                                          r"\['unlabeled'\], but teacher_generate\.splits made only \['train'\]"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, out, "s", targets="data/teacher_targets",
                        target_splits=["train", "unlabeled"])
    with pytest.raises(ConfigError, match=r"kd\.students\.s\.per_article is 2, but teacher_generate\.num_return_sequences"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, out, "s", targets="data/teacher_targets", per_article=2)


def test_every_recipe_trains_the_same_optimizer_steps(setup, tiny_data, pooled, tmp_path):
    """A step budget (student.steps) is the same for a recipe that sees its articles twice, or adds the
    unlabeled pool, as for the label-only control: 24 references + 24 x 2 + 12 x 2 summaries are 96
    examples, 24 batches of 4 per pass, yet 7 steps each."""
    out = tmp_path / "both"
    _generate_pooled(setup, tiny_data, pooled, out, splits=["train", "unlabeled"], num_return_sequences=2)
    _, control = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "control", student={"steps": 7})
    _, seqkd = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "seqkd", student={"steps": 7},
                               targets="data/teacher_targets", target_splits=["train", "unlabeled"], per_article=2,
                               with_references=True)
    assert control["steps"] == seqkd["steps"] == 7
    history = (tmp_path / "live_control" / "plots" / "metrics" / "val" / "loss.tsv").read_text().splitlines()
    assert [row.split("\t")[0] for row in history[1:]] == ["6", "7"]  # after the pass (6 steps) and at the last step
    recipe = json.loads((tmp_path / "seqkd" / "recipe.json").read_text())
    assert recipe["target_splits"] == ["train", "unlabeled"] and recipe["per_article"] == 2


def test_any_systems_summaries_from_a_file(setup, tiny_data, pooled, tmp_path):
    """A JSON lines file of {id, summary} (say, a large language model's), tokenized with the student's
    tokenizer: a file holding the references trains exactly the label-only student's weights; unknown
    ids and uncovered articles are errors naming the file (the latter skipped on request)."""
    from kd.data.builtin import generate

    refs = generate("train", TINY_RECORDS, 0)
    baseline, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "baseline")
    file = tmp_path / "llm.jsonl"
    file.write_text("".join(json.dumps({"id": r["id"], "summary": r["highlights"]}) + "\n" for r in refs))
    same, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "llm", targets=str(file))
    assert all(torch.equal(baseline[k], same[k]) for k in baseline)

    file.write_text("".join(json.dumps({"id": r["id"], "summary": "Something else entirely."}) + "\n" for r in refs[:20]))
    with pytest.raises(ConfigError, match=r"llm\.jsonl: no summary for 4 article\(s\) of \['train'\].*uncovered: skip"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "llm2", targets=str(file))
    other, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "llm3", targets=str(file), uncovered="skip")
    assert not all(torch.equal(baseline[k], other[k]) for k in baseline)
    file.write_text(json.dumps({"id": "nobody", "summary": "A."}) + "\n")
    with pytest.raises(ConfigError, match=r"llm\.jsonl:1: unknown id 'nobody'"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "llm4", targets=str(file))
    unlabeled = [{"id": f"builtin-unlabeled-0-{i:06d}", "summary": "Summary of an unlabeled article."} for i in range(12)]
    file.write_text("".join(json.dumps(u) + "\n" for u in unlabeled))
    _, summary = _pooled_student(tiny_data, pooled, tmp_path, setup, tmp_path, "llm5", targets=str(file),
                                 target_splits=["unlabeled"], with_references=True)
    assert summary["steps"] == 9  # (24 references + 12 summaries) / 4 per batch, one epoch


def test_no_splits_to_summarize_means_no_work(tmp_path):
    """A profile without sequence-level KD sets teacher_generate.splits to []: the stage loads no model
    (none needs to exist) and writes a manifest of no splits, which a recipe asking for summaries refuses."""
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({"teacher_generate": {**GENERATE, "splits": []}}))
    out = tmp_path / "targets"
    run = subprocess.run([sys.executable, "-m", "stages.teacher_generate", "--params", str(params),
                          "--teacher", str(tmp_path / "no-teacher"), "--out", str(out), "--log-dir", str(tmp_path),
                          "--cost-out", str(tmp_path / "cost.json")],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json"]
    from kd.errors import ConfigError
    from kd.teacher.targets import check_generated, read_manifest

    manifest = read_manifest(out)
    assert manifest["splits"] == {}
    with pytest.raises(ConfigError, match="kd.students.s.target_splits asks for the teacher's summaries of "
                                          r"\['train'\], but teacher_generate.splits made only \[\]"):
        check_generated(manifest, splits=["train"], per_article=1, where="kd.students.s")


def _same_text_sets(setup, tiny_data, pooled, targets_dir):
    """{recipe name: (ids, labels) of its training set} for every recipe of params.yaml that learns from the
    teacher's summaries, built as its distill stage builds it (on the pooled tiny data)."""
    from kd.data.tokenization import load_tokenizer
    from kd.params import load_section
    from kd.students.distill import summary_training_set
    from kd.students.recipe import resolve
    from kd.training.run import file_digest, load_tokenized

    kd, spec, train = (load_section(s, ROOT / "params.yaml") for s in ("kd", "student", "train"))
    tokenized = load_tokenized(pooled / "tokenized")
    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    teacher_id = file_digest(setup / "teacher" / "model.safetensors")
    sets = {}
    for name, raw in kd.students.items():
        if raw.teacher_targets:
            recipe = resolve(name, kd, spec, train)
            train_set, sources = summary_training_set(recipe, tokenized, tokenizer, teacher_id=teacher_id,
                                                      teacher_targets_dir=targets_dir, max_target_length=16)
            sets[name] = (train_set["id"], train_set["labels"], sources)
    return sets


def test_every_same_text_recipe_trains_on_seqkd_s_examples(setup, tiny_data, pooled, tmp_path):
    """The default's KD students learn on seqkd's text: the same example ids with the same target token ids,
    in the same order (references, then the teacher's summaries of the labelled set and the unlabeled pool),
    so the table compares losses, not how much text each student saw."""
    from kd.params import load_section

    out = tmp_path / "same_text"
    _generate_pooled(setup, tiny_data, pooled, out, splits=["train", "unlabeled"])
    sets = _same_text_sets(setup, tiny_data, pooled, out)
    students = load_section("kd", ROOT / "params.yaml").students
    with_losses = {n for n, r in students.items() if r.losses}
    assert "seqkd" in sets and with_losses and with_losses <= set(sets)  # every KD recipe is a same-text one
    ids, labels, sources = sets["seqkd"]
    assert len(ids) == 2 * TINY_RECORDS + 12 and sources.count("unlabeled") == 12
    for name, (other_ids, other_labels, other_sources) in sets.items():
        assert other_ids == ids and other_labels == labels and other_sources == sources, name


def test_training_sources_follow_the_training_split():
    """Each row's source (what source_weights weights) lines up with training_split's rows: references
    first, then the summaries of each split; with a share, the chosen train rows on a summary."""
    import datasets

    from kd.teacher.targets import training_sources

    train = datasets.Dataset.from_dict({"id": ["a", "b", "c", "d"], "labels": [[1], [2], [3], [4]]})
    unl = datasets.Dataset.from_dict({"id": ["u", "v"], "labels": [[9], [9]]})
    summaries = [[[11]], [[12]], [[13]], [[14]]]
    full = training_split(train, {"train": with_summaries(train, summaries), "unlabeled": unl}, with_references=True)
    assert training_sources(4, {"train": 4, "unlabeled": 2}, with_references=True) == \
        ["references"] * 4 + ["train"] * 4 + ["unlabeled"] * 2
    assert len(full) == 10
    mixed = training_split(train, {"train": with_summaries(train, summaries)}, share=0.5, seed=3,
                           train_summaries=summaries)
    sources = training_sources(4, {"train": 4}, share=0.5, seed=3)
    assert [("train" if row[0] > 10 else "references") for row in mixed["labels"]] == sources
    assert sources.count("train") == 2


def test_teacher_pass_once_matches_the_live_teacher_with_every_logit_kept(setup, tiny_data, pooled, tmp_path):
    """teacher_pass: once caches the teacher's top-k over the recipe's own training set (summaries included);
    with k = the vocabulary nothing is cut, so the student trains to the live teacher's weights (up to float
    rounding), and the summary charges the pass's seconds to the recipe."""
    out = tmp_path / "targets_once"
    _generate_pooled(setup, tiny_data, pooled, out, splits=["train", "unlabeled"])
    recipe = dict(targets="data/teacher_targets", target_splits=["train", "unlabeled"], with_references=True,
                  label_weight=0.5, losses={"logit": {"weight": 0.5}})
    live_w, live_s = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "live", student={"steps": 5}, **recipe)
    once_w, once_s = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "once", student={"steps": 5},
                                     teacher_pass="once", top_k=10_000, **recipe)
    assert live_s["teacher_seconds"] == 0 and once_s["teacher_seconds"] > 0
    cache = json.loads((tmp_path / "ck_once" / "teacher_topk" / "manifest.json").read_text())
    assert cache["n_examples"] == 2 * TINY_RECORDS + 12
    # fp16 log-probs in the cache (kd.teacher.cache) are the only difference: far smaller than the KD term's
    labels_w, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "labels", student={"steps": 5},
                                  **(recipe | {"losses": {}}))
    near = max(float((live_w[k] - once_w[k]).abs().max()) for k in live_w)
    apart = max(float((live_w[k] - labels_w[k]).abs().max()) for k in live_w)
    assert near < 1e-3 and near < apart / 10, (near, apart)
    _, cut = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "cut", student={"steps": 5},
                             teacher_pass="once", top_k=4, **recipe)
    assert json.loads((tmp_path / "ck_cut" / "teacher_topk" / "manifest.json").read_text())["k"] == 4
    with pytest.raises(ConfigError, match=r"kd\.students\.s\.teacher_pass is once .* need the live teacher"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, out, "s", teacher_pass="once",
                        losses={"feature": {"weight": 1.0}})


def test_source_weights_put_the_label_loss_on_the_references_alone(setup, tiny_data, pooled, tmp_path):
    """source_weights {train: 0, unlabeled: 0}: the label loss sees the references only. With no losses that
    equals training on the references with every summary row contributing nothing; an unknown source is an
    error naming the key."""
    out = tmp_path / "targets_weights"
    _generate_pooled(setup, tiny_data, pooled, out, splits=["train", "unlabeled"])
    recipe = dict(targets="data/teacher_targets", target_splits=["train", "unlabeled"], with_references=True)
    plain, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "plain", student={"steps": 4}, **recipe)
    ones, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "ones", student={"steps": 4},
                              source_weights={"references": 1.0, "train": 1.0}, **recipe)
    refs, _ = _pooled_student(tiny_data, pooled, tmp_path, setup, out, "refs", student={"steps": 4},
                              source_weights={"train": 0.0, "unlabeled": 0.0}, **recipe)
    assert all(torch.equal(plain[k], ones[k]) for k in plain)  # all ones: the model's own loss, bit for bit
    assert any(not torch.allclose(plain[k], refs[k]) for k in plain)
    with pytest.raises(ConfigError, match=r"kd\.students\.s\.source_weights\.summaries is not a source"):
        _pooled_student(tiny_data, pooled, tmp_path, setup, out, "s", source_weights={"summaries": 0.0}, **recipe)
