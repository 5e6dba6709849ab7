"""Scores: the per-example metric registry, ROUGE, BLEU, faithfulness, bootstrap intervals."""
