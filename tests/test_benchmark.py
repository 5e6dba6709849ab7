"""The benchmark stages end to end on tiny models: quality (one model per run: validation and test, beam
and greedy, per example), speed (every model, interleaved rounds) and report (side by side, intervals,
paired differences); plus their pure helpers and their errors."""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys

import pytest
import yaml
from conftest import ROOT, tiny_t5

from kd.evaluation.benchmark import decodings, example_rows, scored_records, split_metrics
from kd.evaluation.speed import cpu_model, round_orders, speed_of

N_TEST = 5
SCORE_KEYS = ["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu"]
PARAMS = {
    "tokenizer": {"prefix": "summarize: ", "max_source_length": 48},
    "benchmark": {"num_beams": 2, "max_new_tokens": 6, "batch_size": 2, "num_examples": 2, "warmup_batches": 1,
                  "lead_n": 3, "device": "cpu", "speed_repeats": 3, "speed_samples": 4},
    "kd": {"students": {"small": {"teacher_input": "models/teacher", "targets": "data/tokenized"}}},
}


# One torch thread: tiny models decode several times faster so on a shared 2-core machine, and the
# speed stage's host block must report what its workers used.
ENV = dict(os.environ, OMP_NUM_THREADS="1", TQDM_DISABLE="1")


def run_stage(name, args, cwd):
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *map(str, args)], cwd=cwd,
                          capture_output=True, text=True, timeout=300, env=ENV)


def ok(out):
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def assert_fails_in_one_line(out, *needles):
    assert out.returncode == 2, out.stderr[-4000:]
    assert "Traceback" not in out.stderr, out.stderr[-4000:]
    errors = [line for line in out.stderr.splitlines() if "error:" in line]
    assert len(errors) == 1, out.stderr[-4000:]
    for needle in needles:
        assert needle in errors[0], errors[0]


@pytest.fixture(scope="module")
def work(tiny_data, tmp_path_factory):
    """A workspace: params.yaml, 5-article validation and test splits and two tiny models (teacher,
    student_small) saved with their tokenizer, as the training stages leave them."""
    from transformers import AutoTokenizer

    from kd.data.builtin import generate

    root = tmp_path_factory.mktemp("bench")
    (root / "params.yaml").write_text(yaml.safe_dump(PARAMS))
    for split in ("validation", "test"):
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in generate(split, N_TEST, 0)))
    tok = AutoTokenizer.from_pretrained(tiny_data / "tokenizer")
    for name, model in (("teacher", tiny_t5(d_model=32, layers=2, vocab=len(tok), attn="sdpa")),
                        ("student_small", tiny_t5(d_model=16, layers=1, vocab=len(tok), attn="sdpa", seed=1))):
        model.save_pretrained(root / "models" / name)
        tok.save_pretrained(root / "models" / name)
    return root


def quality(work, name, *model_args):
    return run_stage("benchmark", ["--params", "params.yaml", "--name", name, *model_args, "--test", "test.jsonl",
                                   "--validation", "validation.jsonl", "--out", f"results/quality/{name}.json",
                                   "--examples", f"results/examples/{name}.jsonl"], work)


# One fixture per stage run, so each test pays for the runs it needs (the report reads them all).

@pytest.fixture(scope="module")
def teacher_twice(work):
    """The quality stage on the teacher, run twice: the first run's bytes."""
    ok(quality(work, "teacher", "--model", "models/teacher"))
    first = {p: (work / "results" / p).read_bytes() for p in ("quality/teacher.json", "examples/teacher.jsonl")}
    ok(quality(work, "teacher", "--model", "models/teacher"))
    return first


@pytest.fixture(scope="module")
def lead(work):
    ok(quality(work, "lead3", "--lead"))


@pytest.fixture(scope="module")
def student(work):
    ok(quality(work, "small", "--model", "models/student_small"))


@pytest.fixture(scope="module")
def speed(work):
    ok(run_stage("speed", ["--params", "params.yaml", "--test", "test.jsonl", "--out", "results/speed.json",
                           "--model", "teacher=models/teacher", "--model", "small=models/student_small"], work))
    return json.loads((work / "results" / "speed.json").read_text())


# --- pure helpers -----------------------------------------------------------------------------

def test_round_orders_alternate():
    assert round_orders(["a", "b", "c"], 4) == [["a", "b", "c"], ["c", "b", "a"], ["a", "b", "c"], ["c", "b", "a"]]


def test_speed_of_takes_the_median_round():
    assert speed_of([2.0, 100.0, 4.0], 8) == {"samples_per_s": 2.0, "ms_per_sample": 500.0}


def test_cpu_model(tmp_path):
    info = tmp_path / "cpuinfo"
    info.write_text("processor\t: 0\nmodel name\t: Some CPU @ 2.00GHz\n\nprocessor\t: 1\nmodel name\t: Some CPU\n")
    assert cpu_model(info) == "Some CPU @ 2.00GHz"
    assert cpu_model(tmp_path / "none")  # falls back to platform, never empty


def test_decodings_example_rows_and_split_metrics():
    assert decodings(4) == {"beam": 4, "greedy": 1} and decodings(1) == {"greedy": 1}
    records = [{"id": "a", "article": "Ana Ruiz won in Lima. It rained.", "highlights": "Ana Ruiz won in Lima."},
               {"id": "b", "article": "Bo Kim lost 3-1 to Oslo.", "highlights": "Bo Kim lost."}]
    rows = example_rows(records, ["Ana Ruiz won in Lima.", "Zed Moe lost."], split="test", decoding="beam")
    assert [r["id"] for r in rows] == ["a", "b"] and rows[0]["split"] == "test" and rows[0]["decoding"] == "beam"
    assert rows[0]["rouge1"] == 100.0 and rows[0]["entity_precision"] == 100.0 and "fact_recall" not in rows[0]
    assert rows[1]["entity_precision"] == 0.0  # "Zed Moe" is not in the article
    assert rows[1]["prediction"] == "Zed Moe lost." and rows[1]["length"] == 3
    metrics = split_metrics(rows, [r["highlights"] for r in records])
    assert metrics["n_examples"] == 2 and metrics["entity_precision"] == 50.0
    assert metrics["rouge1"] == round((rows[0]["rouge1"] + rows[1]["rouge1"]) / 2, 4)
    assert metrics["rouge1_low"] <= metrics["rouge1"] <= metrics["rouge1_high"]
    assert "bleu" in metrics and "entity_precision_low" in metrics and "length_low" not in metrics
    assert [r["id"] for r in scored_records([{"id": i} for i in range(5)], 2)] == [0, 1]
    with pytest.raises(Exception, match="the validation split is empty"):
        scored_records([], None, "validation")


# --- quality ----------------------------------------------------------------------------------

def test_quality_scores_both_splits_and_decodings_byte_identically(work, teacher_twice):
    quality = json.loads((work / "results" / "quality" / "teacher.json").read_text())
    assert list(quality) == ["params", "size_mb", "bleu_signature", "validation", "test"]
    assert quality["params"] > 0 and quality["size_mb"] > 0
    for split in ("validation", "test"):
        assert list(quality[split]) == ["beam", "greedy"]
        for metrics in quality[split].values():
            assert metrics["n_examples"] == N_TEST
            assert {*SCORE_KEYS, "rougeL_low", "rougeL_high", "fact_precision", "fact_recall", "entity_precision",
                    "novel_bigram_pct", "repeated_trigram_pct", "length"} <= set(metrics)
    rows = [json.loads(line) for line in (work / "results" / "examples" / "teacher.jsonl").read_text().splitlines()]
    ids = {split: [json.loads(line)["id"] for line in (work / f"{split}.jsonl").read_text().splitlines()]
           for split in ("validation", "test")}
    for split in ("validation", "test"):
        for decoding in ("beam", "greedy"):
            assert [r["id"] for r in rows if (r["split"], r["decoding"]) == (split, decoding)] == ids[split]
    beam = [r for r in rows if (r["split"], r["decoding"]) == ("test", "beam")]
    assert quality["test"]["beam"]["rougeL"] == round(sum(r["rougeL"] for r in beam) / N_TEST, 4)
    for path, content in teacher_twice.items():  # the second run rewrote the same bytes
        assert (work / "results" / path).read_bytes() == content, path


def test_lead_needs_no_model(work, lead):
    from kd.metrics.rouge import lead_n

    quality = json.loads((work / "results" / "quality" / "lead3.json").read_text())
    assert list(quality) == ["bleu_signature", "validation", "test"] and list(quality["test"]) == ["lead"]
    records = [json.loads(line) for line in (work / "test.jsonl").read_text().splitlines()]
    rows = [json.loads(line) for line in (work / "results" / "examples" / "lead3.jsonl").read_text().splitlines()]
    assert [r["prediction"] for r in rows if r["split"] == "test"] == [lead_n(r["article"], 3) for r in records]
    assert all(r["entity_precision"] == 100.0 for r in rows)  # copied from the article


def test_quality_missing_or_corrupt_model_fails_in_one_line(work, tmp_path):
    out = run_stage("benchmark", ["--params", work / "params.yaml", "--name", "x", "--model", tmp_path / "missing",
                                  "--test", work / "test.jsonl", "--validation", work / "validation.jsonl",
                                  "--out", tmp_path / "q" / "x.json", "--examples", tmp_path / "p" / "x.jsonl"], tmp_path)
    assert_fails_in_one_line(out, "missing", "config.json")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(work / "models" / "student_small", corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out = run_stage("benchmark", ["--params", work / "params.yaml", "--name", "x", "--model", corrupt,
                                  "--test", work / "test.jsonl", "--validation", work / "validation.jsonl",
                                  "--out", tmp_path / "q" / "x.json", "--examples", tmp_path / "p" / "x.jsonl"], tmp_path)
    assert_fails_in_one_line(out, "model.safetensors")
    assert not (tmp_path / "q").exists() and not (tmp_path / "p").exists()


# --- speed ------------------------------------------------------------------------------------

def test_speed_interleaves_rounds_and_records_the_host(speed):
    assert list(speed) == ["host", "teacher", "small"]
    host = speed["host"]
    assert {"hostname", "cpu", "logical_cores", "torch_threads", "device", "torch", "transformers", "date"} <= set(host)
    assert host["device"] == "cpu" and host["n_samples"] == 4 and host["rounds"] == 3 and host["torch_threads"] == 1
    # round r runs the models in order, reversed every other round
    assert speed["teacher"]["round_position"] == [0, 1, 0]
    assert speed["small"]["round_position"] == [1, 0, 1]
    for name in ("teacher", "small"):
        row = speed[name]
        assert len(row["round_s"]) == 3 and all(s > 0 for s in row["round_s"])
        median = statistics.median(row["round_s"])
        assert row["samples_per_s"] == pytest.approx(4 / median, rel=1e-3)
        assert row["ms_per_sample"] == pytest.approx(1000 * median / 4, rel=1e-3)
        assert row["peak_mem_mb"] >= 0 and row["num_beams"] == 2
    # every model but the teacher is also timed greedy, in the same rounds
    assert "greedy" not in speed["teacher"]
    greedy = speed["small"]["greedy"]
    assert len(greedy["round_s"]) == 3 and all(s > 0 for s in greedy["round_s"])
    assert greedy["samples_per_s"] == pytest.approx(4 / statistics.median(greedy["round_s"]), rel=1e-3)


def test_speed_missing_or_corrupt_model_fails_in_one_line(work, tmp_path):
    args = ["--params", work / "params.yaml", "--test", work / "test.jsonl", "--out", tmp_path / "s.json"]
    out = run_stage("speed", [*args, "--model", f"teacher={work / 'models' / 'teacher'}",
                              "--model", f"x={tmp_path / 'missing'}"], tmp_path)
    assert_fails_in_one_line(out, "missing", "config.json")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(work / "models" / "student_small", corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    out = run_stage("speed", [*args, "--model", f"x={corrupt}"], tmp_path)  # raised in the worker process
    assert_fails_in_one_line(out, "x:", "model.safetensors")
    assert not (tmp_path / "s.json").exists()


# --- report -----------------------------------------------------------------------------------

def report(work, out, quality_dir="results/quality", *extra):
    return run_stage("report", ["--params", "params.yaml", "--quality-dir", quality_dir,
                                "--examples-dir", "results/examples", "--speed", "results/speed.json",
                                "--live-dir", "live", "--validation", "validation.jsonl", "--test", "test.jsonl",
                                *extra, "--out", out], work)


def test_report_gathers_every_model_side_by_side(work, teacher_twice, student, lead, speed):
    live = work / "live" / "student_small"  # a training summary, as the distill stage leaves it
    live.mkdir(parents=True, exist_ok=True)
    (live / "metrics.json").write_text(json.dumps({"train_seconds": 12.5, "train_tokens": 4000}))
    ok(report(work, "results/report"))
    out = work / "results" / "report"
    results = json.loads((out / "benchmark_results.json").read_text())
    assert list(results) == ["teacher", "small", "lead3"]
    q = {name: json.loads((work / "results" / "quality" / f"{name}.json").read_text()) for name in results}
    for name in results:
        for split in ("validation", "test"):
            for decoding, metrics in q[name][split].items():
                for key, value in metrics.items():
                    assert results[name][split][decoding][key] == value, (name, split, decoding, key)
    teacher, small, lead = results["teacher"], results["small"], results["lead3"]
    assert small["compression"] == round(q["teacher"]["params"] / q["small"]["params"], 4)
    assert small["speedup"] == round(speed["small"]["samples_per_s"] / speed["teacher"]["samples_per_s"], 4)
    assert small["samples_per_s"] == speed["small"]["samples_per_s"]
    assert small["train_seconds"] == 12.5 and small["train_tokens"] == 4000 and "train_seconds" not in teacher
    assert teacher["compression"] == teacher["speedup"] == 1.0
    # served: the student greedy against the teacher at beam, speed from the same run
    assert small["speedup_greedy"] == round(speed["small"]["greedy"]["samples_per_s"]
                                            / speed["teacher"]["samples_per_s"], 4)
    if q["teacher"]["test"]["beam"]["rougeL"]:
        assert small["retention_greedy"] == round(100 * q["small"]["test"]["greedy"]["rougeL"]
                                                  / q["teacher"]["test"]["beam"]["rougeL"], 4)
    assert "speedup_greedy" not in teacher and "speedup_greedy" not in lead
    for key in ("rouge1", "rougeL"):
        t = q["teacher"]["test"]["beam"][key]
        # an untrained teacher may score 0: then there is no retention (tests/test_metrics.py has exact ones)
        if t:
            assert small["test"]["beam"][f"retention_{key}"] == round(100 * q["small"]["test"]["beam"][key] / t, 4)
    # the student paired with the teacher, over the same examples: the mean difference is the difference of means
    diff = small["test"]["greedy"]["vs_teacher"]["rougeL"]
    assert diff["mean_diff"] == pytest.approx(q["small"]["test"]["greedy"]["rougeL"] - q["teacher"]["test"]["greedy"]["rougeL"], abs=2e-4)
    assert diff["low"] <= diff["mean_diff"] <= diff["high"] and 0 <= diff["share_le_0"] <= 1
    assert "vs_baseline" not in small["test"]["greedy"]  # no student named baseline here
    assert "params" not in lead and "speedup" not in lead and "vs_teacher" not in lead["test"]["lead"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert list(metrics["small"]) == ["val_rougeL", "val_fact_precision", "test_rougeL"]
    assert metrics["small"]["test_rougeL"] == small["test"]["beam"]["rougeL"]
    assert metrics["lead3"]["val_rougeL"] == lead["validation"]["lead"]["rougeL"]
    header = (out / "comparison_table.csv").read_text().splitlines()[0]
    assert header.startswith("model,kind,split,decoding,rouge1")
    assert len((out / "comparison_table.csv").read_text().splitlines()) == 1 + 2 * (2 + 2 + 1)
    text = (out / "benchmark_report.txt").read_text()
    assert "median of 3 interleaved rounds" in text and "num_beams: 2" in text and "Examples (2 of 2)" in text
    assert "Validation split" in text and "rougeL [95% CI]" in text and "Served (test)" in text
    first = json.loads((work / "test.jsonl").read_text().splitlines()[0])
    assert f"[1] id: {first['id']}" in text
    for png in ("scores.png", "quality_vs_speed.png"):
        assert (out / png).read_bytes()[:4] == b"\x89PNG"


def test_report_names_a_missing_quality_file_and_its_stage(work, teacher_twice, lead, student, speed, tmp_path):
    partial = tmp_path / "quality"
    partial.mkdir()
    for name in ("teacher", "lead3"):
        shutil.copy(work / "results" / "quality" / f"{name}.json", partial)
    out = report(work, tmp_path / "out", quality_dir=partial)
    assert_fails_in_one_line(out, "small.json", "dvc repro benchmark@small")
    assert not (tmp_path / "out").exists()


def test_report_puts_the_teachers_training_split_rouge_beside_its_test_rouge(work, teacher_twice, student, lead,
                                                                           speed, tmp_path):
    """With the teacher_generate stage's manifest: how well the teacher's summaries of the students'
    labelled set (seqkd targets) match its references, beside its test scores, without touching the
    other tables; a manifest without that split adds nothing."""
    manifest = {"num_beams": 2, "splits": {"train": {"n_examples": 40}, "unlabeled": {"n_examples": 80}},
                "train_rouge": {"rouge1": 61.5, "rouge2": 40.25, "rougeL": 55.0, "rougeLsum": 57.75}}
    (work / "tt.json").write_text(json.dumps(manifest))
    out = tmp_path / "report"
    ok(report(work, str(out), "results/quality", "--teacher-targets", "tt.json"))
    results = json.loads((out / "benchmark_results.json").read_text())
    assert results["teacher"]["train_split"] == {"decoding": "beam", "num_beams": 2, "n_examples": 40,
                                                **manifest["train_rouge"]}
    assert "train_split" not in results["small"]
    assert len((out / "comparison_table.csv").read_text().splitlines()) == 1 + 2 * (2 + 2 + 1)
    text = (out / "benchmark_report.txt").read_text()
    section = text.split("Teacher: its summaries of the students' labelled set (the seqkd targets) vs its test summaries")[1]
    train_row = next(line for line in section.splitlines() if line.strip().startswith("train"))
    assert "61.5" in train_row and "55" in train_row
    assert any(line.strip().startswith("test") for line in section.splitlines()[:6]), section[:400]
