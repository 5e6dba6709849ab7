"""Summaries from a trained model, with the benchmark's decoding settings.

Shared by the benchmark stages (quality and speed) and `python -m kd.summarize`, so what a user
generates is what was scored and timed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence


def generate_batch(model, tokenizer, articles: Sequence[str], *, prefix: str, max_source_length: int,
                   num_beams: int, max_new_tokens: int, device: str = "cpu", min_new_tokens: int = 0) -> list[str]:
    """One batch of articles -> summaries (beam search when num_beams > 1, else greedy; no sampling)."""
    from kd.models.modeling import generate_kwargs

    enc = tokenizer([prefix + a for a in articles], max_length=max_source_length, truncation=True,
                    padding=True, return_tensors="pt").to(device)
    extra = {"min_new_tokens": min_new_tokens} if min_new_tokens else {}
    out = model.generate(**enc, num_beams=num_beams, max_new_tokens=max_new_tokens, do_sample=False,
                         **extra, **generate_kwargs(model))
    return [t.strip() for t in tokenizer.batch_decode(out, skip_special_tokens=True)]


def batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for i in range(0, len(items), size):
        yield items[i:i + size]


def check_model_dir(model_dir: str | Path) -> None:
    """A ConfigError naming `model_dir` unless it holds a saved model (its config.json)."""
    from kd.errors import ConfigError

    if not (Path(model_dir) / "config.json").is_file():
        raise ConfigError(f"model {str(model_dir)!r} has no config.json (missing or not a saved model); "
                          f"train it first")


def load_summarizer(model_dir: str | Path, device: str = "cpu"):
    """(model, tokenizer) from one model directory, in eval mode on `device`, SDPA attention.

    A directory without config.json is a ConfigError naming it; so is a model or tokenizer that does
    not load (kd.models.modeling.load_model and kd.data.tokenization.load_tokenizer name the file).
    """
    from kd.models.modeling import load_model
    from kd.data.tokenization import load_tokenizer

    check_model_dir(model_dir)
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(model_dir, attn_implementation="sdpa").to(device).eval()
    return model, tokenizer


def generate_all(model, tokenizer, articles: Sequence[str], *, batch_size: int, prefix: str,
                 max_source_length: int, num_beams: int, max_new_tokens: int, device: str = "cpu",
                 progress: Optional[Callable[[int, int], None]] = None) -> list[str]:
    """Every article -> its summary, `batch_size` at a time, under inference mode, in input order;
    `progress(done, total)` after each batch when given."""
    import torch

    predictions: list[str] = []
    with torch.inference_mode():
        for batch in batches(articles, batch_size):
            predictions += generate_batch(model, tokenizer, batch, prefix=prefix, max_source_length=max_source_length,
                                          num_beams=num_beams, max_new_tokens=max_new_tokens, device=device)
            if progress:
                progress(len(predictions), len(articles))
    return predictions
