"""Summaries from a trained model, with the benchmark's decoding settings.

Shared by the benchmark stages and `python -m kd.summarize`, so what a user generates is what was scored.
"""

from __future__ import annotations

from typing import Iterator, Sequence


def generate_batch(model, tokenizer, articles: Sequence[str], *, prefix: str, max_source_length: int,
                   num_beams: int, max_new_tokens: int, device: str = "cpu", min_new_tokens: int = 0) -> list[str]:
    """One batch of articles -> summaries (beam search when num_beams > 1, else greedy; no sampling)."""
    from kd.modeling import generate_kwargs

    enc = tokenizer([prefix + a for a in articles], max_length=max_source_length, truncation=True,
                    padding=True, return_tensors="pt").to(device)
    extra = {"min_new_tokens": min_new_tokens} if min_new_tokens else {}
    out = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                         **extra, **generate_kwargs(model))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]
