"""kd.mentions: each name and number of a summary is counted once, by kind, as the event's, the article's
(a distractor or detail) or invented, with fact_precision's own mention and support rules."""

from __future__ import annotations

import json
import subprocess
from collections import Counter

import pytest

from kd.data import builtin
from kd.errors import ConfigError
from kd.metrics.faithfulness import fact_precision
from kd.mentions import classify, main, markdown, tally

ARTICLE = ("It has been a busy week in Madrid. On Friday, Storm David swept across Cairo, leaving at least 4 "
           "people dead. About 81,000 homes were left without power.")
FACTS = {"event": {"storm": "Storm David", "place": "Cairo", "deaths": "4", "homes": "81,000"},
         "reference": ["Storm David", "4", "Cairo", "81,000"], "distractors": ["Madrid"]}


def test_each_mention_is_the_events_the_articles_or_invented():
    summary = "Storm David hits Madrid. At least 26 people killed. About 81,000 homes in Cairo and Lima lose power."
    assert classify(summary, ARTICLE, FACTS) == [
        ("name", "event"),      # Storm David (a run at a sentence opener, kept: two tokens)
        ("name", "article"),    # Madrid: the distractor's
        ("number", "invented"),  # 26
        ("number", "event"),    # 81,000
        ("name", "event"),      # Cairo
        ("name", "invented"),   # Lima
    ]


def test_the_event_share_is_fact_precision_and_repeats_count_once():
    summary = "Storm David hits Madrid. Madrid is hit by Storm David with 26 dead."
    kinds = classify(summary, ARTICLE, FACTS)
    assert len(kinds) == 3  # Storm David, Madrid, 26: each once
    assert 100 * sum(source == "event" for _, source in kinds) / len(kinds) == fact_precision(summary, FACTS)
    assert classify("Nothing named here.", ARTICLE, FACTS) == []


def test_tally_sums_over_examples_and_names_a_missing_article():
    records = {"a": {"article": ARTICLE, "facts": FACTS}}
    examples = [{"id": "a", "prediction": "Storm David kills 4 in Cairo."}, {"id": "a", "prediction": "Lima."}]
    counts = tally(examples, records)
    assert counts == Counter({("name", "event"): 2, ("number", "event"): 1})  # "Lima." alone opens its sentence
    with pytest.raises(ConfigError, match="'b' has no article"):
        tally([{"id": "b", "prediction": "x"}], records)
    with pytest.raises(ConfigError, match="carries no facts"):
        tally([{"id": "a", "prediction": "x"}], {"a": {"article": ARTICLE}})


def test_markdown_gives_each_count_its_share_of_its_kind():
    table = markdown({"m": Counter({("name", "event"): 3, ("name", "invented"): 1, ("number", "article"): 2})})
    assert "| m | 3 (75%) | 0 (0%) | 1 (25%) | 0 (0%) | 2 (100%) | 0 (0%) |" in table


def test_main_reads_the_examples_of_a_commit(tmp_path, capsys, monkeypatch):
    """Through git, on the builtin corpus: a model that states each article's reference facts has only
    event mentions; the examples come from the commit, not the working tree."""
    records = builtin.generate("validation", 5, 0)
    raw = tmp_path / "raw"
    raw.mkdir()
    (raw / "validation.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    repo = tmp_path / "repo"
    examples = repo / "benchmark_results" / "examples" / "good.jsonl"
    examples.parent.mkdir(parents=True)
    examples.write_text("".join(json.dumps({"split": "validation", "decoding": "beam", "id": r["id"],
                                            "prediction": r["highlights"]}) + "\n" for r in records))
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "x"], check=True)
    examples.write_text("")  # the working tree's copy is not read
    monkeypatch.chdir(repo)
    assert main(["good", "--raw", str(raw)]) == 0
    row = next(line for line in capsys.readouterr().out.splitlines() if line.startswith("| good |"))
    cells = [c.strip() for c in row.strip("|").split("|")][1:]
    assert [c.endswith("(100%)") or c == "0" for c in cells[:1] + cells[3:4]] == [True, True]
    assert all(c.startswith("0") for c in cells[1:3] + cells[4:6]), row  # nothing from elsewhere, nothing invented
