"""The teacher_outputs stage's worker: run the trained teacher once over the training split and store
its top-k logits per target token and its full rows' logsumexp at each of `teacher_outputs.temperatures`
(kd.teacher.cache), stamped with what it was made from."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from kd.errors import ConfigError
from kd.models.modeling import load_model, resolve_device
from kd.training.objective import freeze_teacher
from kd.params import TeacherOutputsParams
from kd.training.run import file_digest, load_tokenized
from kd.teacher.cache import cache_identity, write_cache
from kd.data.tokenization import load_tokenizer
from kd.training.loop import make_collator

log = logging.getLogger(__name__)


def write_teacher_outputs(*, params: TeacherOutputsParams, teacher_dir: Path, tokenizer_dir: Path,
                          tokenized_dir: Path, out_dir: Path) -> dict:
    teacher_path = Path(teacher_dir)
    if not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    tokenized = load_tokenized(tokenized_dir)
    tokenizer = load_tokenizer(str(tokenizer_dir))
    device = torch.device(resolve_device(params.device, "teacher_outputs.device"))
    teacher = freeze_teacher(load_model(teacher_path), device)
    manifest = write_cache(out_dir, teacher=teacher, dataset=tokenized["train"], collate=make_collator(tokenizer),
                           batch_size=params.batch_size, k=params.top_k, device=device,
                           temperatures=params.temperatures,
                           manifest=cache_identity(teacher_id=file_digest(teacher_path / "model.safetensors"),
                                                   tokenizer=tokenizer,
                                                   train_ds=tokenized["train"], with_size=False))
    log.info("cached top-%d teacher logits for %d tokens of %d examples in %s (temperatures %s)", manifest["k"],
             manifest["n_tokens"], manifest["n_examples"], out_dir, manifest["temperatures"])
    return manifest
