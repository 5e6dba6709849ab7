"""tools.int8check: a student directory read back from DVC's cache as an experiment's dvc.lock names it,
and the int8 - fp32 comparison and its summary over seeds."""

from __future__ import annotations

import hashlib
import json
import subprocess

import pytest
import yaml

from kd.errors import ConfigError
from tools import int8check


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def test_materialize_copies_a_locked_directory_out_of_the_cache(tmp_path):
    repo = tmp_path / "repo"
    repo.mkdir()
    files = {"config.json": b'{"model_type": "t5"}', "sub/weights.bin": b"\x00\x01weights"}
    listing = [{"md5": _md5(data), "relpath": rel} for rel, data in files.items()]
    for rel, data in files.items():
        obj = int8check.cache_file(repo, _md5(data))
        obj.parent.mkdir(parents=True, exist_ok=True)
        obj.write_bytes(data)
    body = json.dumps(listing).encode()
    dir_md5 = _md5(body) + ".dir"
    int8check.cache_file(repo, dir_md5).parent.mkdir(parents=True, exist_ok=True)
    int8check.cache_file(repo, dir_md5).write_bytes(body)
    lock = {"schema": "2.0", "stages": {"distill@x": {"cmd": "x", "outs": [
        {"path": "dvclive/student_x/metrics.json", "md5": "0" * 32}, {"path": "models/student_x", "md5": dir_md5}]}}}
    (repo / "dvc.lock").write_text(yaml.safe_dump(lock))
    for cmd in (["init", "-q"], ["add", "dvc.lock"], ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "x"]):
        subprocess.run(["git", *cmd], cwd=repo, check=True)
    out = int8check.materialize(repo, "HEAD", "models/student_x", tmp_path / "got")
    assert {p.relative_to(out).as_posix(): p.read_bytes() for p in out.rglob("*") if p.is_file()} == files
    with pytest.raises(ConfigError, match="no directory output 'models/student_y'"):
        int8check.materialize(repo, "HEAD", "models/student_y", tmp_path / "y")
    int8check.cache_file(repo, listing[1]["md5"]).unlink()
    with pytest.raises(ConfigError, match="sub/weights.bin of HEAD: not in the DVC cache"):
        int8check.materialize(repo, "HEAD", "models/student_x", tmp_path / "z")


def test_compare_pairs_int8_with_fp32_and_summary_averages_seeds():
    fp32 = [{"rougeL": v, "fact_precision": 50.0} for v in (30.0, 40.0, 50.0, 60.0)]
    int8 = [{"rougeL": v - 1.0, "fact_precision": 50.0} for v in (30.0, 40.0, 50.0, 60.0)]
    got = int8check.compare(fp32, int8, resamples=200)
    assert got["rougeL"]["fp32"] == 45.0 and got["rougeL"]["int8"] == 44.0
    diff = got["rougeL"]["int8_minus_fp32"]
    assert diff["mean_diff"] == -1.0 and diff["low"] == diff["high"] == -1.0 and diff["share_le_0"] == 1.0
    assert got["fact_precision"]["int8_minus_fp32"]["mean_diff"] == 0.0
    per_seed = {"0": {"s": got}, "1": {"s": int8check.compare(fp32, fp32, resamples=200)}}
    summary = int8check.summary(per_seed)
    assert summary["s"]["rougeL"] == {"per_seed": {"0": -1.0, "1": 0.0}, "mean": -0.5}
