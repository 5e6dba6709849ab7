"""Summaries from a trained model, with the benchmark's decoding settings.

Shared by the benchmark stages (quality and speed) and `python -m kd.summarize`, so what a user
generates is what was scored and timed. Greedy decoding of a T5 model goes through kd.models.greedy
(the same ids as `generate`, with less work per token); beam search and anything else through
`model.generate`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence


def generate_batch(model, tokenizer, articles: Sequence[str], *, prefix: str, max_source_length: int,
                   num_beams: int, max_new_tokens: int, device: str = "cpu", min_new_tokens: int = 0) -> list[str]:
    """One batch of articles -> summaries (beam search when num_beams > 1, else greedy; no sampling)."""
    from kd.models import greedy
    from kd.models.modeling import generate_kwargs

    enc = tokenizer([prefix + a for a in articles], max_length=max_source_length, truncation=True,
                    padding=True, return_tensors="pt").to(device)
    if greedy.supports(model, num_beams=num_beams, min_new_tokens=min_new_tokens):
        out = greedy.greedy(model, enc["input_ids"], enc["attention_mask"], max_new_tokens=max_new_tokens)
    else:
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


def load_summarizer(model_dir: str | Path, device: str = "cpu", *, int8: bool = False):
    """(model, tokenizer) from one model directory, in eval mode on `device`, SDPA attention; `int8`
    (CPU only) quantizes its linear layers (see `quantize_int8`).

    A directory without config.json is a ConfigError naming it; so is a model or tokenizer that does
    not load (kd.models.modeling.load_model and kd.data.tokenization.load_tokenizer name the file).
    """
    from kd.models.modeling import load_model
    from kd.data.tokenization import load_tokenizer

    check_model_dir(model_dir)
    if int8 and device != "cpu":
        from kd.errors import ConfigError

        raise ConfigError(f"int8 serves on the CPU only, not on {device!r} (set benchmark.device: cpu)")
    tokenizer = load_tokenizer(str(model_dir))
    model = load_model(model_dir, attn_implementation="sdpa").to(device).eval()
    return (quantize_int8(model) if int8 else model), tokenizer


def quantize_int8(model):
    """The model with every nn.Linear (attention, feed-forward, the LM head) replaced by torch's dynamic
    int8 linear: weights stored int8, activations quantized per batch on the fly; embeddings and norms
    stay fp32. On a 2-core CPU at t5-small / t5-base shapes it decodes 2.6-2.8x faster than fp32
    (docs/serving.md); torchao's eager int8 path measured slower there, ONNX Runtime's exporter does not
    install beside our transformers. Inference only, CPU only."""
    import warnings

    import torch

    with warnings.catch_warnings():  # its deprecation notice points at torchao, measured slower here
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


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
