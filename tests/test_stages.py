"""Stage scripts on bad input: one clear message naming the key/file/line, exit status 2, nothing written."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, SHARED_CNNDM


def run_stage(name, args, cwd):
    return subprocess.run([sys.executable, str(ROOT / "stages" / f"{name}.py"), *args], cwd=cwd,
                          capture_output=True, text=True)


def params(tmp_path, **sections):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.mark.parametrize("stage", ["download", "tokenize", "train_teacher", "teacher_outputs", "distill", "benchmark"])
def test_help(stage, tmp_path):
    out = run_stage(stage, ["--help"], tmp_path)
    assert out.returncode == 0 and "--params" in out.stdout


def assert_fails_cleanly(out, *needles):
    assert out.returncode == 2, out.stderr
    assert "Traceback" not in out.stderr
    for needle in needles:
        assert needle in out.stderr, out.stderr


@pytest.mark.parametrize("sections,needle", [
    ({"kd": {"temperature": 0}}, "kd.temperature"),
    ({"kd": {"alpha": 2}}, "kd.alpha"),
    ({"kd": {"students": {"vanilla": ["logits"]}}}, "unknown loss 'logits'"),
    ({"train": {"lr": 0.1}}, "train.lr"),
    ({"student": {"num_heads": "four"}}, "student.num_heads"),
])
def test_distill_rejects_bad_params_before_writing(tmp_path, sections, needle):
    p = params(tmp_path, **sections)
    out = run_stage("distill", ["--student", "vanilla", "--params", str(p), "--out", str(tmp_path / "m")], tmp_path)
    assert_fails_cleanly(out, needle)
    assert not (tmp_path / "m").exists()


def test_distill_unknown_student(tmp_path):
    out = run_stage("distill", ["--student", "huge", "--params", str(params(tmp_path))], tmp_path)
    assert_fails_cleanly(out, "unknown student 'huge'")


def test_download_unknown_source(tmp_path):
    out = run_stage("download", ["--params", str(params(tmp_path, data={"source": "s3"})),
                                 "--out", str(tmp_path / "raw")], tmp_path)
    assert_fails_cleanly(out, "data.source")
    assert not (tmp_path / "raw").exists()


def jsonl_params(tmp_path, train_text):
    data = tmp_path / "own"
    data.mkdir()
    good = json.dumps({"id": "a", "article": "An article. It has words.", "highlights": "A summary."}) + "\n"
    (data / "train.jsonl").write_text(train_text)
    (data / "validation.jsonl").write_text(good)
    (data / "test.jsonl").write_text(good)
    return params(tmp_path, data={"source": "jsonl", "jsonl": {
        "train": str(data / "train.jsonl"), "validation": str(data / "validation.jsonl"),
        "test": str(data / "test.jsonl")}})


@pytest.mark.parametrize("train_text,needle", [
    ('{"id": "a", "article": "x", "highlights": "y"}\n{"id": "b", "article": \n', "train.jsonl:2: malformed JSON"),
    ('{"id": "a", "highlights": "y"}\n', "train.jsonl:1: record missing 'article'"),
    ('{"id": "a", "article": "x"}\n', "train.jsonl:1: record missing 'highlights'"),
    ("\n", "no records (empty split)"),
])
def test_download_jsonl_errors_name_file_and_line(tmp_path, train_text, needle):
    p = jsonl_params(tmp_path, train_text)
    out = run_stage("download", ["--params", str(p), "--out", str(tmp_path / "raw")], tmp_path)
    assert_fails_cleanly(out, needle)
    assert not (tmp_path / "raw").exists()


def test_download_jsonl_missing_file(tmp_path):
    p = params(tmp_path, data={"source": "jsonl", "jsonl": {"train": str(tmp_path / "nope.jsonl")}})
    out = run_stage("download", ["--params", str(p), "--out", str(tmp_path / "raw")], tmp_path)
    assert_fails_cleanly(out, "nope.jsonl", "not found")


def test_download_jsonl_real_cnndm_sample(tmp_path):
    if not SHARED_CNNDM.is_dir():
        pytest.skip("../shared/data/cnn_dailymail is not here")
    p = params(tmp_path, data={"source": "jsonl", "jsonl": {
        s: str(SHARED_CNNDM / f"{s}.jsonl") for s in ("train", "validation", "test")}})
    out = run_stage("download", ["--params", str(p), "--out", str(tmp_path / "raw"), "--log-dir",
                                 str(tmp_path / "logs")], tmp_path)
    assert out.returncode == 0, out.stderr
    counts = {s: len((tmp_path / "raw" / f"{s}.jsonl").read_text().splitlines()) for s in ("train", "validation", "test")}
    assert counts == {"train": 99, "validation": 100, "test": 446}
    assert (tmp_path / "logs" / "download.log").is_file()


def test_benchmark_needs_a_teacher_and_existing_models(tmp_path):
    raw = tmp_path / "test.jsonl"
    raw.write_text(json.dumps({"id": "a", "article": "x y.", "highlights": "y."}) + "\n")
    out = run_stage("benchmark", ["--params", str(params(tmp_path)), "--test", str(raw), "--out", str(tmp_path / "b"),
                                  "--model", f"student_x={tmp_path / 'missing'}"], tmp_path)
    assert_fails_cleanly(out, "teacher")
    out = run_stage("benchmark", ["--params", str(params(tmp_path)), "--test", str(raw), "--out", str(tmp_path / "b"),
                                  "--model", f"teacher={tmp_path / 'missing'}"], tmp_path)
    assert_fails_cleanly(out, "missing", "config.json")
    assert not (tmp_path / "b").exists()


def test_teacher_student_vocabulary_mismatch(tmp_path):
    from conftest import tiny_t5

    from kd.errors import ConfigError
    from kd.modeling import check_same_vocab

    with pytest.raises(ConfigError, match="vocabulary mismatch: teacher has 64 tokens, student has 80"):
        check_same_vocab(tiny_t5(vocab=64), tiny_t5(vocab=80))


def test_killed_training_stage_resumes_from_its_checkpoint(tiny_data, tmp_path):
    """SIGKILL the teacher stage mid-training, rerun it: it resumes from checkpoints/.../last."""
    import signal
    import time

    p = params(tmp_path, teacher={"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1,
                                  "num_heads": 2, "epochs": 40, "lr": 0.01},
               train={"batch_size": 4, "checkpoint_every": 1})
    args = [sys.executable, str(ROOT / "stages" / "train_teacher.py"), "--params", str(p),
            "--tokenizer", str(tiny_data / "tokenizer"), "--tokenized", str(tiny_data / "tokenized"),
            "--out", str(tmp_path / "teacher"), "--checkpoints", str(tmp_path / "ckpt"),
            "--live-dir", str(tmp_path / "live"), "--log-dir", str(tmp_path / "logs")]
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    state = tmp_path / "ckpt" / "last" / "state.json"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if json.loads(state.read_text())["step"] >= 5:
                break
        except FileNotFoundError:  # not written yet, or being swapped for a newer one
            pass
        time.sleep(0.05)
    assert proc.poll() is None, "training finished before it could be interrupted"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "teacher").exists()  # no half-written model
    from kd.checkpoint import find_last

    # SIGKILL may land between atomic_dir's two renames: then the previous checkpoint is the one
    killed_at = json.loads((find_last(tmp_path / "ckpt") / "state.json").read_text())["step"]

    out = subprocess.run(args, cwd=tmp_path, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    log = (tmp_path / "logs" / "train_teacher.log").read_text()
    assert f"at step {killed_at}" in log and "resumed from" in log
    assert (tmp_path / "teacher" / "model.safetensors").is_file()
    assert not (tmp_path / "ckpt" / "last").exists()
