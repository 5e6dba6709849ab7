"""Corpus BLEU as the field reports it: sacreBLEU's default (13a tokenizer, case-sensitive, BLEU-4, one
reference per prediction), so numbers compare with published ones; the signature names the settings.

BLEU is a corpus score (n-gram counts summed over the split before the ratio), so it is not a per-example
metric of the registry: the benchmark adds it to each split's summary.
"""

from __future__ import annotations

from typing import Sequence


def bleu(predictions: Sequence[str], references: Sequence[str]) -> float:
    """Corpus BLEU (x100). Newlines (one sentence per line in our summaries) become spaces first: sacreBLEU
    takes one line per segment."""
    from sacrebleu.metrics import BLEU

    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions but {len(references)} references; they must pair up")
    if not predictions:
        raise ValueError("no predictions to score")
    metric = BLEU()
    score = metric.corpus_score([_line(p) for p in predictions], [[_line(r) for r in references]])
    return float(score.score)


def signature() -> str:
    """sacreBLEU's settings string ("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:..."), recorded
    beside the scores."""
    from sacrebleu.metrics import BLEU

    metric = BLEU()
    metric.corpus_score(["a"], [["a"]])  # the signature counts the references, known once scored
    return str(metric.get_signature())


def _line(text: str) -> str:
    return " ".join(text.split())
