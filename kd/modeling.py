"""Building, loading and describing T5 models."""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel, PreTrainedTokenizerBase, T5Config

from kd.errors import ConfigError
from kd.params import ModelParams, TrainParams


def config_from_params(spec: ModelParams, tokenizer: PreTrainedTokenizerBase) -> T5Config:
    return T5Config(
        vocab_size=len(tokenizer),
        d_model=spec.d_model,
        d_kv=spec.d_kv,
        d_ff=spec.d_ff,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        num_heads=spec.num_heads,
        dropout_rate=spec.dropout,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )


def build_model(spec: ModelParams, tokenizer: PreTrainedTokenizerBase, *, seed: int,
                attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A pretrained model when `spec.pretrained` is set, else a fresh T5 initialised from `seed`."""
    if spec.pretrained:
        model = load_model(spec.pretrained, attn_implementation=attn_implementation)
    else:
        torch.manual_seed(seed)
        model = AutoModelForSeq2SeqLM.from_config(
            config_from_params(spec, tokenizer), attn_implementation=attn_implementation
        )
    check_vocab(model, tokenizer, what=spec.pretrained or "model built from params")
    return model


def load_model(path: str | Path, *, attn_implementation: str = "sdpa") -> PreTrainedModel:
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(str(path), attn_implementation=attn_implementation)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a seq2seq model from {str(path)!r}: {e}") from None


def check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, what: str) -> None:
    # Pretrained T5 pads its embedding to a multiple of 128, so the model may be larger than the
    # tokenizer but never smaller.
    if model.config.vocab_size < len(tokenizer):
        raise ConfigError(
            f"vocabulary mismatch: {what} has {model.config.vocab_size} embeddings but the tokenizer "
            f"has {len(tokenizer)} tokens"
        )


def check_same_vocab(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Logit distillation compares distributions token by token, so the vocabularies must match."""
    if teacher.config.vocab_size != student.config.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: teacher has {teacher.config.vocab_size} tokens, student has "
            f"{student.config.vocab_size}; use the teacher's tokenizer for the student"
        )


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def size_on_disk_mb(path: str | Path) -> float:
    files = [p for p in Path(path).rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 2**20


def resolve_device(name: str, key: str = "benchmark.device") -> str:
    """'auto' -> cuda when present, else cpu; asking for cuda without one is an error naming `key`."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"params: {key} is 'cuda' but no CUDA device is available")
    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_device(train: TrainParams) -> torch.device:
    return torch.device(resolve_device(train.device, "train.device"))
