"""The real-scale rehearsal (tools.rehearsal, `python -m tools.bench rehearsal`): its corpus' length statistics,
its extrapolation arithmetic, its disk accounting, and one tiny run through every stage."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest
from conftest import ROOT, SHARED_CNNDM

from kd.errors import ConfigError
from tools.rehearsal import overrides, rehearsal_params, scaled_seconds, stored_ratio
from tools.rehearsal_corpus import (ARTICLE_WORDS, CNNDM_SIZES, SUMMARY_WORDS, LengthStats, generate_split,
                                 load_pool, lognormal_lengths, scaled_sizes, take_nearest)

# --- the corpus ------------------------------------------------------------------------------------------


def test_take_nearest_stops_at_the_total_nearest_the_target():
    pieces = [("a", 3), ("b", 3), ("c", 3)]
    assert take_nearest(iter(pieces), 5) == ["a", "b"]  # 6 is nearer 5 than 3
    assert take_nearest(iter(pieces), 4) == ["a"]  # 3 is nearer 4 than 6
    assert take_nearest(iter(pieces), 0.5) == ["a"]  # at least one
    assert take_nearest(iter(pieces), 100) == ["a", "b", "c"]  # runs out


def test_lognormal_lengths_have_the_asked_mean():
    import numpy as np

    lengths = lognormal_lengths(np.random.default_rng(0), ARTICLE_WORDS, 0.5, 200_000)
    assert lengths.mean() == pytest.approx(ARTICLE_WORDS, rel=0.01)
    assert lengths.min() >= 1


def test_scaled_sizes():
    assert scaled_sizes(1.0) == CNNDM_SIZES == {"train": 287_113, "validation": 13_368, "test": 11_490}
    assert scaled_sizes(0.01) == {"train": 2871, "validation": 134, "test": 115}
    assert scaled_sizes(1e-6, minimum=8) == {"train": 8, "validation": 8, "test": 8}


@pytest.mark.parametrize("sample", ["shared", "builtin"])
def test_corpus_has_cnndm_length_statistics(sample):
    """At a moderate size the means are within a few percent of See et al.'s 781 and 56 words."""
    if sample == "shared" and not SHARED_CNNDM.is_dir():
        pytest.skip("../shared/data/cnn_dailymail is not here")
    pool = load_pool(SHARED_CNNDM if sample == "shared" else None)
    stats = LengthStats()
    records = [stats.add(r) for r in generate_split(pool, "train", 3000, seed=0)]
    got = stats.summary()
    assert got["mean_article_words"] == pytest.approx(ARTICLE_WORDS, rel=0.03)
    assert got["mean_summary_words"] == pytest.approx(SUMMARY_WORDS, rel=0.03)
    assert len({r["id"] for r in records}) == 3000
    assert all(r["article"].strip() and r["highlights"].strip() for r in records)
    # deterministic for (seed, split); other splits and seeds differ
    assert list(generate_split(pool, "train", 5, seed=0)) == records[:5]  # a smaller corpus is its start
    assert next(generate_split(pool, "test", 5, seed=0))["article"] != records[0]["article"]
    assert next(generate_split(pool, "train", 5, seed=1))["article"] != records[0]["article"]


# --- extrapolation (the FLOP counts it uses: tests/test_flops.py) ----------------------------------------


def test_scaled_seconds():
    assert scaled_seconds(10.0, 4, 400) == pytest.approx(1000)


# --- disk: stored once or twice --------------------------------------------------------------------------


@pytest.mark.parametrize("link,ratio", [("copy", 2.0), ("hardlink", 1.0), ("symlink", 1.0)])
def test_stored_ratio_sees_a_second_copy(tmp_path, link, ratio):
    out, cache = tmp_path / "out", tmp_path / "cache"
    out.mkdir(), cache.mkdir()
    (cache / "ab12").write_bytes(b"x" * 100_000)
    {"copy": shutil.copyfile, "hardlink": lambda a, b: os.link(a, b),
     "symlink": lambda a, b: os.symlink(a, b)}[link](cache / "ab12", out / "data.bin")
    got = stored_ratio([out], cache)
    assert got["logical_bytes"] == 100_000
    assert got["ratio"] == pytest.approx(ratio, rel=0.01)


# --- params: the real profile, then only what the rehearsal must change ----------------------------------


def test_rehearsal_params_keep_the_profiles_lengths_and_decoding(tmp_path):
    standins = {name: tmp_path / name for name in ("t5-base", "t5-small", "google/flan-t5-small")}
    real, params, changed = rehearsal_params(tmp_path / "params.yaml", corpus=tmp_path / "corpus",
                                             hf_cache=tmp_path / "hf", standins=standins, num_proc=2,
                                             batch_size=2, generate_rows=8)
    assert real["data"]["hub"]["name"] == "abisee/cnn_dailymail" and real["teacher"]["pretrained"] == "t5-base"
    assert params["data"]["source"] == "hub" and params["data"]["hub"]["name"] == str(tmp_path / "corpus")
    assert params["data"]["hub"]["config"] is None
    assert (params["tokenizer"]["max_source_length"], params["tokenizer"]["max_target_length"]) == (512, 128)
    assert params["teacher_outputs"]["top_k"] == 64 and params["benchmark"]["num_beams"] == 4
    assert params["kd"]["students"]["flan_seqkd"]["student"]["pretrained"] == str(standins["google/flan-t5-small"])
    assert params["teacher"]["pretrained"] == str(standins["t5-base"])
    # nothing but the keys it lists differs from the profile
    assert {k for k in _flat(params) | _flat(real) if _flat(params).get(k) != _flat(real).get(k)} <= set(changed)
    assert changed["tokenizer.num_proc"] == 2 and changed["benchmark.max_samples"] == 8


def _flat(mapping: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in mapping.items():
        if isinstance(value, dict) and value:
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_a_model_without_a_stand_in_is_an_error_naming_the_key(tmp_path):
    params = {"teacher": {"pretrained": "t5-large"}, "student": {"pretrained": "t5-small"}, "kd": {"students": {}}}
    with pytest.raises(ConfigError, match="teacher.pretrained is 't5-large', which has no stand-in"):
        overrides(params, corpus=tmp_path, hf_cache=tmp_path, standins={"t5-small": tmp_path}, num_proc=1,
                  batch_size=2, generate_rows=2)


# --- the whole rehearsal, tiny ---------------------------------------------------------------------------

STUDENTS = ["baseline", "seqkd", "flan_baseline", "flan_seqkd"]
STAGES = ["download", "tokenize", "train_teacher", "teacher_outputs", "teacher_generate",
          *(f"distill_{s}" for s in STUDENTS), "benchmark_teacher", *(f"benchmark_{s}" for s in STUDENTS),
          "benchmark_lead3", "speed", "report"]


def test_rehearsal_runs_every_stage_tiny(tmp_path):
    """The real code path at a tiny size: corpus, stand-ins, the profile, dvc repro of the data stages in
    a fresh repo, every later stage script on slices; its JSON has every stage and the budget verdicts."""
    out = tmp_path / "rehearsal.json"
    cmd = [sys.executable, "-m", "tools.bench", "rehearsal", "--tiny", "--scale", "0.00005", "--num-proc", "1",
           "--batch-size", "2", "--train-rows", "2", "--generate-rows", "2", "--work-dir", str(tmp_path / "work"),
           "--out", str(out)]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert done.returncode in (0, 1), done.stderr[-4000:]
    result = json.loads(out.read_text())
    assert done.returncode == (0 if result["ok"] else 1)
    assert [r["stage"] for r in result["stages"]] == STAGES
    for r in result["stages"]:
        assert r["wall_s"] > 0 and r["peak_rss_mb"] > 0, r
        assert r["full"]["cpu_s"] is not None and r["full"]["cpu_s"] > 0, r
    by_stage = {r["stage"]: r for r in result["stages"]}
    for name in ("train_teacher", *(f"distill_{s}" for s in STUDENTS)):
        assert by_stage[name]["throughput"]["unit"] == "tokens/s" and by_stage[name]["throughput"]["value"] > 0
        assert by_stage[name]["full"]["h100_s"] > 0
    assert by_stage["download"]["disk_bytes"]["dvc_cache"] > 0  # the DVC cache is measured
    assert set(result["budgets"]) == {"peak_rss_mb", "stored_once", "wall_s"}
    assert all(isinstance(v["ok"], bool) for v in result["budgets"].values())
    # the repo's DVC config decides whether outputs are stored once; the rehearsal measures what it does
    link = _cache_type(ROOT / ".dvc" / "config")
    stored = result["budgets"]["stored_once"]["value"]
    assert stored < 1.05 if link.startswith(("hardlink", "symlink")) else stored > 1.9
    assert result["setup"]["standins"]["model_vocab_size"] == 32_128
    assert result["full_job"]["counts"] == {"train": 287_113, "validation": 2000, "test": 11_490}
    assert result["full_job"]["teacher_outputs_bytes"] > 0
    assert "full job" in done.stdout and "budget stored_once" in done.stdout


def _cache_type(config) -> str:
    import configparser

    parser = configparser.ConfigParser()
    parser.read_string(config.read_text())
    return parser.get("cache", "type", fallback="reflink,copy").replace(" ", "")
