"""Unit tests for kd.metrics, kd.report and kd.io: exact expectations on tiny hand-made inputs."""

import csv
import json

import pytest
from rouge_score import rouge_scorer

from kd.io import atomic_dir, atomic_file, atomic_write_json, atomic_write_text
from kd.metrics import (
    bleu_scores,
    lead_n,
    rouge_scores,
    split_sentences,
    summary_scores,
    word_tokenize,
)
from kd.errors import ConfigError
from kd.report import (
    add_relative_columns,
    benchmark_rows,
    flat_metrics,
    format_table,
    gather,
    host_line,
    markdown_table,
    nested_metrics,
    plot_quality_vs_speed,
    plot_scores,
    read_predictions,
    render_report,
    side_by_side,
    write_csv,
    write_report,
)

ARTICLE = (
    "Mr. Smith went to Washington on Monday. He met the U.S. president! Did they agree? "
    "\"Yes,\" he said.\nA new paragraph starts here. 12 people attended."
)
SCORE_KEYS = ["rouge1", "rouge2", "rougeL", "rougeLsum", "bleu1", "bleu2", "bleu3", "bleu4"]


# --- kd.metrics -------------------------------------------------------------------------------

def test_split_sentences():
    assert split_sentences(ARTICLE) == [
        "Mr. Smith went to Washington on Monday.",
        "He met the U.S. president!",
        "Did they agree?",
        "\"Yes,\" he said.",
        "A new paragraph starts here.",
        "12 people attended.",
    ]
    assert split_sentences("  \n\n  ") == []
    assert split_sentences("no break here. lower case goes on") == ["no break here. lower case goes on"]
    assert split_sentences("It costs 3.5 dollars. Cheap.") == ["It costs 3.5 dollars.", "Cheap."]


def test_lead_n():
    assert lead_n(ARTICLE) == (
        "Mr. Smith went to Washington on Monday.\nHe met the U.S. president!\nDid they agree?"
    )
    assert lead_n(ARTICLE, n=1) == "Mr. Smith went to Washington on Monday."
    assert lead_n("Only one.", n=3) == "Only one."
    with pytest.raises(ValueError):
        lead_n(ARTICLE, n=0)


def test_identical_texts_score_100():
    texts = ["The cat sat on the mat. It was a sunny day in the park.",
             "Stocks fell sharply on Tuesday after the bank raised rates."]
    scores = summary_scores(texts, list(texts))
    assert list(scores) == SCORE_KEYS
    for key in SCORE_KEYS:
        assert scores[key] == pytest.approx(100.0), key


def test_disjoint_texts_score_0():
    scores = summary_scores(["alpha beta gamma delta"], ["epsilon zeta eta theta"])
    assert scores == {key: 0.0 for key in SCORE_KEYS}


def test_rouge_uses_stemmer():
    scores = rouge_scores(["the man runs"], ["the man running"])
    assert scores["rouge1"] == pytest.approx(100.0)
    # Without stemming only "the man" would match.
    plain = rouge_scorer.RougeScorer(["rouge1"], use_stemmer=False)
    assert plain.score("the man running", "the man runs")["rouge1"].fmeasure == pytest.approx(2 / 3)


def test_rouge_lsum_is_sentence_level():
    prediction = "The cat sat on the mat. A dog barked loudly outside."
    reference = "A dog barked loudly outside. The cat sat on the mat."
    scores = rouge_scores([prediction], [reference])
    # Swapped sentences: summary-level LCS still matches every token, plain LCS only the longer half.
    assert scores["rougeLsum"] == pytest.approx(100.0)
    assert scores["rouge1"] == pytest.approx(100.0)
    assert scores["rougeL"] == pytest.approx(100.0 * 6 / 11)


def test_scores_are_means_over_pairs():
    scores = rouge_scores(["a b c d", "w x y z"], ["a b c d", "p q r s"])
    assert scores["rouge1"] == pytest.approx(50.0)


def test_bleu_tokenizer_and_partial_match():
    assert word_tokenize("It's 3 o'clock, OK?") == ["it", "'", "s", "3", "o", "'", "clock", ",", "ok", "?"]
    # 3 of 4 unigrams match, same length so no brevity penalty.
    assert bleu_scores(["the cat sat down"], ["the cat sat up"])["bleu1"] == pytest.approx(75.0)


@pytest.mark.parametrize("predictions, references", [(["a"], ["a", "b"]), ([], [])])
def test_bad_inputs_raise(predictions, references):
    with pytest.raises(ValueError):
        rouge_scores(predictions, references)
    with pytest.raises(ValueError):
        bleu_scores(predictions, references)


# --- kd.report --------------------------------------------------------------------------------

def _rows():
    return [
        {"model": "teacher", "kind": "teacher", "rouge1": 40.0, "rouge2": 20.0, "rougeL": 30.0,
         "rougeLsum": 36.0, "bleu1": 30.0, "bleu4": 10.0, "params": 240_000_000, "size_mb": 900.0,
         "samples_per_s": 5.0, "ms_per_sample": 200.0, "peak_mem_mb": 2000.0},
        {"model": "vanilla", "kind": "student", "rouge1": 36.0, "rouge2": 15.0,
         "rougeL": 27.0, "rougeLsum": 32.4, "bleu1": 28.0, "bleu4": 8.0, "params": 60_000_000,
         "size_mb": 230.0, "samples_per_s": 20.0, "ms_per_sample": 50.0, "peak_mem_mb": 600.0},
        {"model": "lead3", "kind": "baseline-heuristic", "rouge1": 20.0, "rouge2": 10.0,
         "rougeL": 15.0, "rougeLsum": 18.0, "bleu1": 15.0, "bleu4": 5.0, "params": None,
         "size_mb": None, "samples_per_s": None, "ms_per_sample": None, "peak_mem_mb": None},
    ]


def test_add_relative_columns():
    rows = _rows()
    teacher, student, lead3 = add_relative_columns(rows)
    assert teacher["compression"] == 1.0 and teacher["speedup"] == 1.0
    assert teacher["retention_rouge1"] == 100.0
    assert student["compression"] == pytest.approx(4.0)
    assert student["speedup"] == pytest.approx(4.0)
    assert student["retention_rouge1"] == pytest.approx(90.0)
    assert student["retention_rouge2"] == pytest.approx(75.0)
    assert student["retention_rougeL"] == pytest.approx(90.0)
    assert student["retention_rougeLsum"] == pytest.approx(90.0)
    assert lead3["compression"] is None and lead3["speedup"] is None
    assert lead3["retention_rougeL"] == pytest.approx(50.0)
    assert "compression" not in rows[1], "input rows must not be mutated"


def test_add_relative_columns_needs_teacher():
    with pytest.raises(ValueError, match="t5-large"):
        add_relative_columns(_rows(), teacher="t5-large")


def test_flat_metrics():
    metrics = flat_metrics(add_relative_columns(_rows()))
    assert metrics["teacher.rouge1"] == 40.0
    assert metrics["vanilla.rougeL"] == 27.0
    assert metrics["lead3.rouge1"] == 20.0
    assert metrics["vanilla.retention_rouge2"] == 75.0
    assert metrics["teacher.params"] == 240_000_000
    assert "lead3.params" not in metrics and "lead3.speedup" not in metrics
    assert not any(key.endswith((".model", ".kind")) for key in metrics)
    assert flat_metrics([{"model": "m", "rouge1": 1 / 3}]) == {"m.rouge1": 0.3333}
    json.dumps(metrics, allow_nan=False)


def test_csv_round_trip(tmp_path):
    rows = add_relative_columns(_rows())
    path = tmp_path / "scores.csv"
    write_csv(rows, str(path))
    with open(path, newline="", encoding="utf-8") as handle:
        read = list(csv.DictReader(handle))
    assert [row["model"] for row in read] == ["teacher", "vanilla", "lead3"]
    assert list(read[0]) == list(rows[0])
    assert float(read[1]["rouge1"]) == 36.0 and int(read[0]["params"]) == 240_000_000
    assert read[2]["params"] == "" and read[2]["speedup"] == ""


def test_tables():
    rows = _rows()
    text = format_table(rows, ["model", "rouge1", "params"])
    lines = text.splitlines()
    assert lines[0].split() == ["model", "rouge1", "params"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert lines[2].split() == ["teacher", "40.00", "240,000,000"]
    assert lines[4].split() == ["lead3", "20.00", "-"]
    assert len({len(line) for line in lines[:3]}) == 1, "columns are fixed-width"
    markdown = markdown_table(rows, ["model", "rouge1"]).splitlines()
    assert markdown[:3] == ["| model | rouge1 |", "|---|---:|", "| teacher | 40.00 |"]


def test_report(tmp_path):
    rows = add_relative_columns(_rows())
    examples = [{"id": f"ex{i}", "article": "word " * 200, "reference": "The reference.",
                 "teacher": "Teacher summary.", "vanilla": "Student summary.",
                 "lead3": "Lead sentence."} for i in range(5)]
    text = render_report(rows, examples, {"num_beams": 4, "max_new_tokens": 64})
    assert "num_beams: 4" in text and "Examples (3 of 5)" in text
    assert "ex2" in text and "ex3" not in text
    assert "Student summary." in text and "..." in text
    assert "retention_rougeL" in text and "size_mb" not in text, "report shows REPORT_COLUMNS"
    path = tmp_path / "report.txt"
    write_report(str(path), rows, examples, {"num_beams": 4})
    assert path.read_text(encoding="utf-8").startswith("Benchmark report")


def test_plots(tmp_path):
    rows = _rows()
    for plot, name in [(plot_scores, "scores.png"), (plot_quality_vs_speed, "speed.png")]:
        path = tmp_path / name
        plot(rows, str(path))
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    plot_quality_vs_speed([rows[2]], str(tmp_path / "no_speed.png"))
    assert (tmp_path / "no_speed.png").stat().st_size > 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["no_speed.png", "scores.png", "speed.png"]


def _quality_and_speed():
    """The rows of _rows() as the report stage reads them: quality files and speed.json."""
    quality = {row["model"]: {k: v for k, v in row.items() if v is not None and k not in ("model", "kind")
                              and k not in ("samples_per_s", "ms_per_sample", "peak_mem_mb")} for row in _rows()}
    speed = {"host": {"n_samples": 64}, **{row["model"]: {"samples_per_s": row["samples_per_s"],
                                                          "ms_per_sample": row["ms_per_sample"],
                                                          "peak_mem_mb": row["peak_mem_mb"], "round_s": [1.0]}
                                           for row in _rows() if row["samples_per_s"]}}
    return quality, speed


def test_benchmark_rows_join_quality_and_speed():
    quality, speed = _quality_and_speed()
    models = [("teacher", "teacher"), ("vanilla", "student"), ("lead3", "baseline-heuristic")]
    rows = benchmark_rows(models, quality, speed)
    expected = add_relative_columns(_rows())
    assert [row["model"] for row in rows] == ["teacher", "vanilla", "lead3"]
    for row, want in zip(rows, expected):
        assert {k: v for k, v in row.items() if v is not None} == {k: v for k, v in want.items() if v is not None}
    assert "round_s" not in rows[0], "only the speed summary joins the table"


def test_nested_metrics():
    nested = nested_metrics(add_relative_columns(_rows()) + [{"model": "m", "kind": "student", "rouge1": 1 / 3,
                                                              "flag": True, "bad": float("nan")}])
    assert list(nested) == ["teacher", "vanilla", "lead3", "m"]
    assert nested["vanilla"]["compression"] == 4.0 and nested["vanilla"]["params"] == 60_000_000
    assert "params" not in nested["lead3"] and "kind" not in nested["teacher"]
    assert nested["m"] == {"rouge1": 0.3333}
    json.dumps(nested, allow_nan=False)


def test_side_by_side_and_host_line():
    records = [{"id": f"a{i}", "article": f"Article {i}.", "highlights": f"Ref {i}."} for i in range(3)]
    examples = side_by_side(records, {"teacher": ["t0", "t1", "t2"], "lead3": ["l0", "l1", "l2"]}, 2)
    assert examples == [{"id": "a0", "article": "Article 0.", "reference": "Ref 0.", "teacher": "t0", "lead3": "l0"},
                        {"id": "a1", "article": "Article 1.", "reference": "Ref 1.", "teacher": "t1", "lead3": "l1"}]
    host = {"hostname": "box", "cpu": "Some CPU", "logical_cores": 2, "torch_threads": 2, "device": "cpu",
            "torch": "2.13.0", "transformers": "5.23.0", "date": "2025-01-01", "n_samples": 64, "rounds": 3}
    line = host_line(host)
    assert line.startswith("64 samples, median of 3 interleaved rounds; cpu on box (Some CPU, 2 cores")
    assert host_line({**host, "device": "cuda", "gpu": "H100"}).startswith("64 samples, median of 3 "
                                                                          "interleaved rounds; cuda on box (H100,")
    text = render_report(add_relative_columns(_rows()), examples, {"num_beams": 2}, host=host)
    assert "Speed\n-----\n  " + line in text
    assert "Speed\n-----" not in render_report(_rows(), examples, {"num_beams": 2})


def test_read_predictions_checks_the_test_ids(tmp_path):
    (tmp_path / "m.jsonl").write_text('{"id": "a", "prediction": "x"}\n{"id": "b", "prediction": "y"}\n')
    assert read_predictions(tmp_path, "m", ["a", "b", "c"]) == ["x", "y"]
    with pytest.raises(ConfigError, match=r"m.jsonl: its ids are not the test split's first 2; stale\? "
                                          r"run `dvc repro benchmark@m`"):
        read_predictions(tmp_path, "m", ["b", "a"])
    with pytest.raises(ConfigError, match=r"nope.jsonl: no predictions for 'nope'; run `dvc repro benchmark@nope`"):
        read_predictions(tmp_path, "nope", ["a"])
    (tmp_path / "bad.jsonl").write_text('{"id": "a"}\n')
    with pytest.raises(ConfigError, match="bad.jsonl: not a predictions file"):
        read_predictions(tmp_path, "bad", ["a"])


def _write_stage_outputs(root, quality, speed, n=2):
    records = [{"id": f"a{i}", "article": f"Article {i}.", "highlights": f"Ref {i}."} for i in range(n)]
    for name, metrics in quality.items():
        atomic_write_json(root / "quality" / f"{name}.json", {**metrics, "n_examples": n})
        atomic_write_text(root / "predictions" / f"{name}.jsonl",
                          "".join(json.dumps({"id": r["id"], "prediction": f"{name} {i}"}) + "\n"
                                  for i, r in enumerate(records)))
    atomic_write_json(root / "speed.json", speed)
    return records


def test_gather(tmp_path):
    quality, speed = _quality_and_speed()
    records = _write_stage_outputs(tmp_path, quality, speed)
    kwargs = dict(students=["vanilla"], lead="lead3", quality_dir=tmp_path / "quality",
                  predictions_dir=tmp_path / "predictions", speed_path=tmp_path / "speed.json", records=records)
    rows, examples, host = gather(num_examples=5, **kwargs)
    assert [row["model"] for row in rows] == ["teacher", "vanilla", "lead3"]
    assert rows[1]["speedup"] == 4.0 and rows[1]["compression"] == 4.0 and rows[1]["n_examples"] == 2
    assert rows[1]["retention_rouge1"] == 90.0 and rows[2]["retention_rougeL"] == 50.0
    assert rows[2]["speedup"] is None and host == {"n_samples": 64}
    assert [e["vanilla"] for e in examples] == ["vanilla 0", "vanilla 1"]
    with pytest.raises(ConfigError, match=r"no quality results for 'other'; run `dvc repro benchmark@other`"):
        gather(num_examples=1, **{**kwargs, "students": ["vanilla", "other"]})
    atomic_write_json(tmp_path / "speed.json", {k: v for k, v in speed.items() if k != "vanilla"})
    with pytest.raises(ConfigError, match=r"speed.json: no speed results for \['vanilla'\]; run `dvc repro speed`"):
        gather(num_examples=1, **kwargs)
    atomic_write_json(tmp_path / "quality" / "lead3.json", {**quality["lead3"], "n_examples": 1})
    with pytest.raises(ConfigError, match="different numbers of examples"):
        gather(num_examples=1, **kwargs)


# --- kd.io ------------------------------------------------------------------------------------

def test_atomic_write_json_leaves_no_temp_files(tmp_path):
    path = tmp_path / "metrics.json"
    atomic_write_json(path, {"b": 1, "a": [1, 2]})
    atomic_write_json(path, {"b": 2, "a": [1, 2]})
    text = path.read_text(encoding="utf-8")
    assert text.endswith("}\n") and text.index('"b"') < text.index('"a"')
    assert json.loads(text) == {"b": 2, "a": [1, 2]}
    assert [p.name for p in tmp_path.iterdir()] == ["metrics.json"]


def test_atomic_file_cleans_up_on_error(tmp_path):
    path = tmp_path / "out.txt"
    atomic_write_text(path, "old")
    with pytest.raises(RuntimeError):
        with atomic_file(path) as tmp:
            tmp.write_text("half", encoding="utf-8")
            raise RuntimeError("boom")
    assert path.read_text(encoding="utf-8") == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_dir_keeps_old_dir_on_error(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with pytest.raises(RuntimeError):
        with atomic_dir(target) as tmp:
            assert tmp.parent == tmp_path and tmp.name.startswith(".model.tmp-")
            (tmp / "new.txt").write_text("new", encoding="utf-8")
            raise RuntimeError("boom")
    assert [p.name for p in target.iterdir()] == ["old.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_atomic_dir_replaces_on_success(tmp_path):
    target = tmp_path / "model"
    target.mkdir()
    (target / "old.txt").write_text("old", encoding="utf-8")
    with atomic_dir(target) as tmp:
        (tmp / "new.txt").write_text("new", encoding="utf-8")
    assert [p.name for p in target.iterdir()] == ["new.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["model"]
    with atomic_dir(tmp_path / "fresh" / "out") as tmp:
        (tmp / "f").write_text("x", encoding="utf-8")
    assert (tmp_path / "fresh" / "out" / "f").read_text(encoding="utf-8") == "x"


def test_atomic_dir_crash_between_renames_keeps_the_old_version(tmp_path, monkeypatch):
    """A kill after the old dir is renamed aside and before the new one lands: nothing is lost."""
    import os

    from kd import io
    from kd.checkpoint import LAST, find_last

    last = tmp_path / LAST
    last.mkdir()
    (last / "state.json").write_text('{"step": 1}')
    assert find_last(tmp_path) == last
    real_replace, calls = os.replace, []

    def replace_then_die(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new version's rename
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(io.os, "replace", replace_then_die)
    with pytest.raises(KeyboardInterrupt):
        with io.atomic_dir(last) as tmp:
            (tmp / "state.json").write_text('{"step": 2}')
    monkeypatch.undo()
    assert not last.exists()
    assert (find_last(tmp_path) / "state.json").read_text() == '{"step": 1}'
    with io.atomic_dir(last) as tmp:  # the next save replaces both
        (tmp / "state.json").write_text('{"step": 3}')
    assert find_last(tmp_path) == last and not io.previous_version(last).exists()
