"""Building, loading and describing T5 models."""

from __future__ import annotations

import copy
import logging
import re
from pathlib import Path

import torch
from transformers import AutoModelForSeq2SeqLM, PreTrainedModel, PreTrainedTokenizerBase, T5Config

from kd.errors import ConfigError
from kd.params import ModelParams, TrainParams

log = logging.getLogger(__name__)


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
                attn_implementation: str = "sdpa", teacher: PreTrainedModel | None = None,
                section: str = "student") -> PreTrainedModel:
    """The model `spec.init` asks for: pretrained, fresh from config (seeded), or shrunk from `teacher`."""
    source = spec.source
    if source == "pretrained":
        model = load_model(spec.pretrained, attn_implementation=attn_implementation)
        check_same_tokenizer(spec.pretrained, tokenizer, key=f"{section}.pretrained")
        set_dropout(model, spec.dropout, where=f"{section}.dropout")
    elif source == "shrink":
        if teacher is None:
            raise ConfigError(f"params: {section}.init 'shrink' needs the trained teacher")
        model = shrink_model(teacher, spec, attn_implementation=attn_implementation, section=section)
    else:
        torch.manual_seed(seed)
        model = AutoModelForSeq2SeqLM.from_config(
            config_from_params(spec, tokenizer), attn_implementation=attn_implementation
        )
    check_vocab(model, tokenizer, what=spec.pretrained or f"{section} ({source})")
    return model


def set_dropout(model: PreTrainedModel, rate: float, *, where: str) -> None:
    """A loaded model trains at the params' dropout `rate`, not its checkpoint's: every dropout layer, and
    the config saved with it (T5 reads config.dropout_rate only when it builds its layers)."""
    if model.config.dropout_rate != rate:
        log.info("%s: dropout %s (the checkpoint's was %s)", where, rate, model.config.dropout_rate)
    model.config.dropout_rate = rate
    for module in model.modules():
        if isinstance(module, torch.nn.Dropout):
            module.p = rate


def spread_layers(n_teacher: int, n_student: int) -> list[int]:
    """`n_student` of `n_teacher` layers, evenly spread with the first and last kept (12 -> 6:
    0 2 4 7 9 11, as DistilBART's table); one layer keeps the first."""
    if n_student == 1:
        return [0]
    return [round(i * (n_teacher - 1) / (n_student - 1)) for i in range(n_student)]


def shrink_model(teacher: PreTrainedModel, spec: ModelParams, *, attn_implementation: str = "sdpa",
                 section: str = "student") -> PreTrainedModel:
    """A shallower copy of `teacher` (DistilBART's `make_student`, Shleifer & Rush 2020): embeddings,
    final norms and LM head copied, and only the selected encoder/decoder blocks, in order."""
    chosen = {}
    for stack, key, count, n_teacher in (
        ("encoder", "shrink_encoder_layers", spec.num_layers, teacher.config.num_layers),
        ("decoder", "shrink_decoder_layers", spec.num_decoder_layers, teacher.config.num_decoder_layers),
    ):
        layers = list(getattr(spec, key)) or spread_layers(n_teacher, min(count, n_teacher))
        bad = [i for i in layers if i >= n_teacher]
        if bad:
            raise ConfigError(f"params: {section}.{key} has layer(s) {bad}, but the teacher's {stack} has "
                              f"layers 0..{n_teacher - 1}")
        chosen[stack] = layers
    config = copy.deepcopy(teacher.config)
    config.num_layers, config.num_decoder_layers = len(chosen["encoder"]), len(chosen["decoder"])
    config.dropout_rate = spec.dropout  # the student's own, not the teacher's
    student = AutoModelForSeq2SeqLM.from_config(config, attn_implementation=attn_implementation)
    source = teacher.state_dict()
    state = {}
    for name in student.state_dict():
        m = re.fullmatch(r"(encoder|decoder)\.block\.(\d+)\.(.+)", name)
        if m is None:  # embeddings, final layer norms, lm_head
            state[name] = source[name]
            continue
        stack, i, rest = m.group(1), int(m.group(2)), m.group(3)
        # T5 keeps the relative position bias in block 0 only; the student's block 0 needs that one
        # whichever teacher block it copies.
        src = 0 if "relative_attention_bias" in rest else chosen[stack][i]
        state[name] = source[f"{stack}.block.{src}.{rest}"]
    student.load_state_dict(state)
    log.info("shrunk the teacher: encoder layers %s, decoder layers %s", chosen["encoder"], chosen["decoder"])
    return student


def load_model(path: str | Path, *, attn_implementation: str = "sdpa") -> PreTrainedModel:
    """A seq2seq model from a local directory or a hub name. A model that cannot be loaded (no such
    directory, no weights, a truncated or corrupt weights file) is a one-line ConfigError naming it."""
    from safetensors import SafetensorError

    where = f"cannot load a seq2seq model from {str(path)!r}"
    if str(path).startswith(("/", "./", "../")) and not Path(path).exists():
        # A path, not a hub name: say so instead of transformers' "Repo id must be in the form ...".
        raise ConfigError(f"{where}: no such directory")
    try:
        return AutoModelForSeq2SeqLM.from_pretrained(str(path), attn_implementation=attn_implementation)
    except SafetensorError as e:  # e.g. a copy or download that stopped half-way
        raise ConfigError(f"{where}: {_bad_weights_file(path)} is truncated or corrupt ({_one_line(e)}); "
                          "copy, download or train it again") from None
    except (OSError, ValueError) as e:
        raise ConfigError(f"{where}: {_one_line(e)}") from None


def _bad_weights_file(path: str | Path) -> str:
    """The first local `*.safetensors` file whose header does not read (what from_pretrained does not
    say), or a generic description for a hub model."""
    from safetensors import SafetensorError, safe_open

    for file in sorted(Path(path).glob("*.safetensors")) if Path(path).is_dir() else ():
        try:
            with safe_open(str(file), framework="pt"):
                pass
        except SafetensorError:
            return str(file)
    return "a weights file"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split())


def check_vocab(model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase, *, what: str) -> None:
    # Pretrained T5 pads its embedding to a multiple of 128, so the model may be larger than the
    # tokenizer but never smaller.
    if model.config.vocab_size < len(tokenizer):
        raise ConfigError(
            f"vocabulary mismatch: {what} has {model.config.vocab_size} embeddings but the tokenizer "
            f"has {len(tokenizer)} tokens"
        )


def check_same_tokenizer(model_path: str, tokenizer: PreTrainedTokenizerBase, *, key: str) -> None:
    """A pretrained model must use the pipeline's tokenizer (the teacher's), token for token."""
    from kd.data.tokenization import load_tokenizer

    own = load_tokenizer(model_path)
    if own.get_vocab() != tokenizer.get_vocab():
        raise ConfigError(
            f"vocabulary mismatch: {key} {model_path!r} has a different tokenizer ({len(own)} tokens) from "
            f"the pipeline's ({len(tokenizer)} tokens, the teacher's); teacher and student must share one "
            f"vocabulary (e.g. t5-base -> t5-small, or flan-t5-base -> flan-t5-small)"
        )


def check_same_vocab(teacher: PreTrainedModel, student: PreTrainedModel) -> None:
    """Logit distillation compares distributions token by token, so the vocabularies must match."""
    if teacher.config.vocab_size != student.config.vocab_size:
        raise ConfigError(
            f"vocabulary mismatch: teacher has {teacher.config.vocab_size} tokens, student has "
            f"{student.config.vocab_size}; use the teacher's tokenizer for the student"
        )


def generate_kwargs(model: PreTrainedModel) -> dict:
    """Extra `generate` arguments a model needs. transformers 5.23 sizes T5's KV cache by the encoder
    depth, so a student with more decoder than encoder layers (e.g. a shrunk 1+2) fails with an
    IndexError; a cache that grows as layers write to it decodes identically."""
    cfg = model.config
    if getattr(cfg, "num_decoder_layers", cfg.num_layers) > cfg.num_layers:
        from transformers.cache_utils import DynamicCache, EncoderDecoderCache

        return {"past_key_values": EncoderDecoderCache(DynamicCache(), DynamicCache())}
    return {}


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


def resolve_attention(attn_implementation: str, device: torch.device) -> str:
    """'auto' -> SDPA on CUDA, eager elsewhere: on CPU, T5's SDPA path rebuilds the position-bias mask
    in every layer, and eager trains the builtin models 10-15% faster (docs/tuning-log.md)."""
    if attn_implementation == "auto":
        return "sdpa" if device.type == "cuda" else "eager"
    return attn_implementation


def resolve_precision(precision: str, device: torch.device) -> str:
    """'auto' -> bf16 on CUDA (T5 overflows in fp16), fp32 ('no') elsewhere; fp16 needs CUDA."""
    if precision == "auto":
        return "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "no"
    if precision == "fp16":
        if device.type != "cuda":
            raise ConfigError("params: train.precision 'fp16' needs a CUDA device; use 'bf16' or 'no' on CPU")
        log.warning("train.precision fp16: T5 is known to overflow in fp16; using dynamic loss scaling "
                    "(prefer bf16)")
    return precision
