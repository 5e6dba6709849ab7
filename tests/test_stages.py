"""Stage scripts: every one answers --help, and the download stage reads the real CNN/DailyMail sample.

Bad input through the stages (one clear line, exit status 2, nothing written) is tests/test_bad_inputs.py.
"""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, SHARED_CNNDM


def run_stage(name, args, cwd):
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args], cwd=cwd,
                          capture_output=True, text=True)


def params(tmp_path, **sections):
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(sections))
    return path


@pytest.mark.parametrize("stage", sorted(p.stem for p in (ROOT / "stages").glob("*.py") if p.stem != "__init__"))
def test_help(stage, tmp_path):
    out = run_stage(stage, ["--help"], tmp_path)
    assert out.returncode == 0 and "--params" in out.stdout


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


def test_teacher_student_vocabulary_mismatch(tmp_path):
    from conftest import tiny_t5

    from kd.errors import ConfigError
    from kd.models.modeling import check_same_vocab

    with pytest.raises(ConfigError, match="vocabulary mismatch: teacher has 64 tokens, student has 80"):
        check_same_vocab(tiny_t5(vocab=64), tiny_t5(vocab=80))
