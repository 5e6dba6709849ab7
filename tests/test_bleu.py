"""kd.metrics.bleu is the BLEU the field reports: sacreBLEU's corpus BLEU with its defaults, checked by
hand on a small case and against sacreBLEU itself on real CNN/DailyMail text."""

import json
import math

import pytest
from conftest import SHARED_CNNDM

from kd.metrics.bleu import bleu, signature
from kd.metrics.rouge import lead_n


def test_bleu_by_hand():
    # 7 tokens each (13a splits off the "."), so no brevity penalty. Clipped n-gram matches: 6 of 7
    # unigrams ("the" twice against once), 4 of 6 bigrams, 2 of 5 trigrams, 1 of 4 four-grams.
    prediction, reference = "the cat sat on the mat.", "the cat sat on a mat."
    p = [6 / 7, 4 / 6, 2 / 5, 1 / 4]
    want = 100 * math.exp(sum(math.log(x) for x in p) / 4)
    assert bleu([prediction], [reference]) == pytest.approx(want, abs=1e-9)
    assert bleu([prediction], [prediction]) == pytest.approx(100.0)


def test_bleu_is_case_sensitive_and_joins_lines():
    assert bleu(["The cat sat on the mat"], ["the cat sat on the mat"]) < 100.0
    assert bleu(["the cat sat\non the mat"], ["the cat sat on the mat"]) == pytest.approx(100.0)
    assert "tok:13a" in signature() and "case:mixed" in signature()


def test_bleu_matches_sacrebleu_on_real_text():
    """Lead-3 of the real CNN/DailyMail test articles against their highlights: the same number as
    sacreBLEU's own corpus_bleu on the same strings."""
    sacrebleu = pytest.importorskip("sacrebleu")
    path = SHARED_CNNDM / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:300]]
    predictions = [lead_n(r["article"], 3) for r in records]
    references = [r["highlights"] for r in records]
    theirs = sacrebleu.corpus_bleu([" ".join(p.split()) for p in predictions],
                                   [[" ".join(r.split()) for r in references]]).score
    assert bleu(predictions, references) == pytest.approx(theirs, abs=1e-9)
    assert 5.0 < theirs < 20.0  # lead-3's published BLEU on CNN/DailyMail is in this range
