"""The train_teacher stage's worker: a T5 trained on the labels alone, those of the teacher's own
labelled pool (`teacher_train`) when the data has one, else the students' training split.

Imports no distillation loss and no teacher cache, so editing those never retrains the teacher.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Optional

from datasets import DatasetDict

from kd.models.modeling import build_model, pick_device, resolve_attention
from kd.training.objective import Objective
from kd.params import ModelParams, TrainParams
from kd.training.run import load_tokenized, train_and_save
from kd.data.tokenization import load_tokenizer
from kd.training.loop import FitResult, make_accelerator


def train_teacher(*, spec: ModelParams, train: TrainParams, tokenizer_dir: Path, tokenized_dir: Path,
                  out_dir: Path, ckpt_dir: Path, live_dir: Path, resume_from: Optional[Path] = None,
                  hooks=()) -> FitResult:
    train = spec.training(train)  # teacher.seed, when set, over train.seed
    tokenizer = load_tokenizer(str(tokenizer_dir))
    tokenized = load_tokenized(tokenized_dir)
    if "teacher_train" in tokenized:  # the teacher's own, larger labelled pool (never the unlabeled one)
        tokenized = DatasetDict({**tokenized, "train": tokenized["teacher_train"]})
    device = pick_device(train)
    accelerator = make_accelerator(device)
    model = build_model(spec, tokenizer, seed=train.seed, section="teacher",
                        attn_implementation=resolve_attention(train.attn_implementation, device))
    return train_and_save(name="teacher", model=model, teacher=None, objective=Objective.labels_only(),
                          tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train,
                          accelerator=accelerator, out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir,
                          resume_from=resume_from,
                          fingerprint_of={"spec": dataclasses.asdict(spec), "train": dataclasses.asdict(train)},
                          hooks=hooks)
