"""The per-example metrics the benchmark ships with: ROUGE against the reference, and faithfulness and
shape against the article (and its recorded facts). Each is one registered function (kd.metrics.registry);
the scoring itself lives in kd.metrics.rouge and kd.metrics.faithfulness, which training imports
without the registry."""

from __future__ import annotations

from typing import Mapping, Sequence

from kd.metrics.registry import register


@register("rouge", compare=("rouge1", "rouge2", "rougeL", "rougeLsum"), headline=("rougeL", "rouge1"), order=0)
def rouge(predictions: Sequence[str], records: Sequence[Mapping]) -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F1 (x100) of each prediction against its record's reference, stemmed, rougeLsum
    on newline-split sentences (kd.metrics.rouge.rouge_per_example)."""
    from kd.metrics.rouge import rouge_per_example

    return rouge_per_example(predictions, [r["highlights"] for r in records])


@register("faithfulness", compare=("fact_precision", "fact_recall", "entity_precision"),
          headline=("fact_precision", "entity_precision"), order=10)
def faithfulness(predictions: Sequence[str], records: Sequence[Mapping]) -> list[dict[str, float]]:
    """entity_precision, novel_bigram_pct, repeated_trigram_pct and length against the article, and
    fact_precision and fact_recall where the record carries its facts (kd.metrics.faithfulness)."""
    from kd.metrics.faithfulness import example_scores

    return [example_scores(p, r["article"], r.get("facts")) for p, r in zip(predictions, records)]
