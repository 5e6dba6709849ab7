"""Sequence-level KD: the teacher_generate stage (deterministic, resumable in shards, checked by the
students) and a recipe's `targets` (references, teacher summaries, a share of each, or both)."""

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
from kd.targets import read_targets, teacher_rows, training_split

TEACHER = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "epochs": 1, "lr": 0.01}
GENERATE = {"num_beams": 2, "max_new_tokens": 10, "batch_size": 4, "shard_size": 8}  # 24 records: 3 shards


@pytest.fixture(scope="module")
def setup(tiny_data, tmp_path_factory):
    """A (random) tiny teacher saved as the train_teacher stage saves one, and the raw training split."""
    from kd.data.builtin import generate
    from kd.data.sources import write_jsonl_atomic
    from kd.modeling import build_model
    from kd.run import save_model_dir
    from kd.tokenization import load_tokenizer

    root = tmp_path_factory.mktemp("seqkd")
    tokenizer = load_tokenizer(str(tiny_data / "tokenizer"))
    save_model_dir(build_model(ModelParams(**TEACHER), tokenizer, seed=1, section="teacher"), tokenizer,
                   root / "teacher")
    write_jsonl_atomic(generate("train", TINY_RECORDS, 0), root / "train.jsonl")  # as conftest's tiny_data
    return root


def _generate(setup, tiny_data, out, work, **params):
    from kd.teacher_generate import generate_targets

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
    run = subprocess.run([sys.executable, str(ROOT / "stages" / "teacher_generate.py"), "--params", str(params),
                          "--teacher", str(setup / "teacher"), "--tokenizer", str(tiny_data / "tokenizer"),
                          "--tokenized", str(tiny_data / "tokenized"), "--raw-train", str(setup / "train.jsonl"),
                          "--out", str(out), "--work-dir", str(tmp_path / "work"), "--log-dir", str(tmp_path)],
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr[-2000:]
    assert _digest(out) == _digest(targets)  # the stage script and a second run: byte-identical
    assert not (tmp_path / "work").exists()  # finished: the shards are gone
    rows = [json.loads(line) for line in (targets / "targets.jsonl").read_text().splitlines()]
    manifest = json.loads((targets / "manifest.json").read_text())
    assert len(rows) == manifest["n_examples"] == TINY_RECORDS
    assert manifest["num_beams"] == 2 and manifest["max_new_tokens"] == 10
    assert 0 <= manifest["train_rouge"]["rougeL"] <= 100
    for row in rows:  # labels are the ids of the summary: no decoder start, no padding, <= max_new_tokens
        assert 0 < len(row["labels"]) <= 10 and 0 not in row["labels"]
    assert "teacher on the training split: rouge1" in (tmp_path / "teacher_generate.log").read_text()


def test_an_interrupted_run_resumes_from_its_last_shard(setup, tiny_data, targets, tmp_path, monkeypatch, caplog):
    import kd.teacher_generate as tg

    real, calls = tg.generate_labels, []

    def crash_in_the_second_shard(*args, **kwargs):
        calls.append(len(args[2]))
        if len(calls) == 3:  # shard 1 is 2 batches of 4: the first batch of shard 2 crashes
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(tg, "generate_labels", crash_in_the_second_shard)
    with pytest.raises(RuntimeError, match="killed"):
        _generate(setup, tiny_data, tmp_path / "out", tmp_path / "work")
    assert not (tmp_path / "out").exists() and len(list((tmp_path / "work").glob("shard-*.jsonl"))) == 1
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
    work.mkdir()
    (work / "run.json").write_text(json.dumps({"run": "someone else"}))
    (work / "shard-000000000.jsonl").write_text('{"id": "x", "labels": [5], "summary": "stale"}\n')
    _generate(setup, tiny_data, tmp_path / "out", work)
    assert _digest(tmp_path / "out") == _digest(targets)


def _identity(setup, tiny_data, **change):
    from kd.run import file_digest, load_tokenized
    from kd.teacher_cache import cache_identity
    from kd.tokenization import load_tokenizer

    identity = cache_identity(teacher_id=file_digest(setup / "teacher" / "model.safetensors"),
                              tokenizer=load_tokenizer(str(tiny_data / "tokenizer")),
                              train_ds=load_tokenized(tiny_data / "tokenized")["train"])
    return identity | change


def test_students_refuse_targets_of_another_teacher(setup, tiny_data, targets):
    assert len(read_targets(targets, identity=_identity(setup, tiny_data))) == TINY_RECORDS
    with pytest.raises(ConfigError, match="made for another teacher.*teacher: made for .* this run has 'other'"):
        read_targets(targets, identity=_identity(setup, tiny_data, teacher="other"))
    with pytest.raises(ConfigError, match="run the teacher_generate stage first"):
        read_targets(setup / "nowhere", identity={})


def test_teacher_share_and_both_targets():
    import datasets

    train = datasets.Dataset.from_dict({"input_ids": [[5, 1]] * 10, "labels": [[7, i, 1] for i in range(10)]})
    teacher = [[8, i, i, 1] for i in range(10)]
    assert training_split(train, teacher, share=1.0, with_references=False, seed=0)["labels"] == teacher
    half = training_split(train, teacher, share=0.5, with_references=False, seed=3)["labels"]
    chosen = teacher_rows(10, 0.5, 3)
    assert len(chosen) == 5 and chosen != teacher_rows(10, 0.5, 4)  # the seed picks them
    assert [i for i, lab in enumerate(half) if lab[0] == 8] == chosen
    assert all(half[i] == train["labels"][i] for i in range(10) if i not in chosen)
    both = training_split(train, teacher, share=1.0, with_references=True, seed=0)
    assert list(both["labels"]) == list(train["labels"]) + teacher
    assert list(both["input_ids"]) == list(train["input_ids"]) * 2


def test_the_tokenized_split_on_disk_is_never_written(tiny_data, tmp_path):
    """The distill stage must not leave files (datasets' cache-*.arrow) in the tokenize stage's output:
    DVC would see the output changed and rerun everything downstream."""
    import shutil

    from kd.run import load_tokenized

    copy = tmp_path / "tokenized"
    shutil.copytree(tiny_data / "tokenized", copy)
    before = sorted(p.relative_to(copy) for p in copy.rglob("*"))
    train = load_tokenized(copy)["train"]
    teacher = [[9, 1]] * len(train)
    for kw in ({"share": 1.0, "with_references": False}, {"share": 0.5, "with_references": False},
               {"share": 1.0, "with_references": True}):
        out = training_split(train, teacher, seed=0, **kw)
        assert out.features == train.features
    assert sorted(p.relative_to(copy) for p in copy.rglob("*")) == before


def _student(tiny_data, tmp_path, setup, targets_dir, name, **recipe):
    from kd.distill import distill_student
    from kd.params import KDParams, TrainParams, parse
    from kd.recipe import resolve

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
    from kd.run import load_tokenized

    copy = tmp_path / "refs_as_targets"
    copy.mkdir()
    (copy / "manifest.json").write_text((targets / "manifest.json").read_text())
    refs = load_tokenized(tiny_data / "tokenized")["train"]
    (copy / "targets.jsonl").write_text("".join(json.dumps({"id": i, "labels": lab, "summary": ""}) + "\n"
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
