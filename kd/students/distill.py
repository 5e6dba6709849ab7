"""The distill stage's worker: train one student with the losses its recipe gives it.

The recipe (kd.students.recipe) says which losses, with which settings and weights, which teacher-side input
(the live teacher or the teacher_outputs cache), which targets (the references or the teacher's
summaries, kd.teacher.targets) and which student and training settings.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Optional

import torch
from datasets import DatasetDict

from kd import paths
from kd.errors import ConfigError
from kd.losses.registry import loss_class
from kd.models.modeling import build_model, check_same_vocab, load_model, pick_device, resolve_attention
from kd.training.objective import LiveTeacher, freeze_teacher
from kd.students.recipe import RECIPE_FILE, Recipe, build_objective
from kd.training.run import file_digest, load_tokenized, train_and_save
from kd.teacher.targets import (check_generated, read_manifest, read_summary_file, read_targets, training_sources,
                               training_split, with_summaries)
from kd.teacher.cache import TeacherCache, cache_identity, open_teacher_cache, write_cache
from kd.data.tokenization import load_tokenizer
from kd.training.loop import FitResult, make_accelerator

log = logging.getLogger(__name__)


def distill_student(*, recipe: Recipe, teacher_dir: Path, tokenizer_dir: Path, tokenized_dir: Path,
                    out_dir: Path, ckpt_dir: Path, live_dir: Path, teacher_device: Optional[str] = None,
                    teacher_outputs_dir: Path = paths.TEACHER_OUTPUTS_DIR,
                    teacher_targets_dir: Path = paths.TEACHER_TARGETS_DIR, resume_from: Optional[Path] = None,
                    max_target_length: int = 64, hooks=()) -> FitResult:
    """Train the student `recipe` describes (no losses: the label-only baseline) and save it with its
    resolved recipe (`recipe.json`) and the decoding it is served with (`generation_config.json`,
    `served_generation`)."""
    spec, train = recipe.student, recipe.train
    tokenized = load_tokenized(tokenized_dir)
    teacher_path = Path(teacher_dir)
    reads_teacher = bool(recipe.losses) or spec.source == "shrink" or recipe.teacher_targets
    if reads_teacher and not (teacher_path / "config.json").is_file():
        raise ConfigError(f"{teacher_path}: no trained teacher here; run the train_teacher stage first")
    # The teacher's tokenizer: the tokenize stage trained it, or copied a pretrained teacher's.
    tokenizer = load_tokenizer(str(tokenizer_dir))
    # Which teacher this run learns from: part of the checkpoint fingerprint, checked against the cache.
    teacher_id = file_digest(teacher_path / "model.safetensors") if reads_teacher else None
    cache = (open_teacher_cache(teacher_outputs_dir, teacher_id=teacher_id, tokenizer=tokenizer,
                                train_ds=tokenized["train"]) if recipe.cached else None)
    if cache is not None:  # the cache knows the tail's mass only at its own temperatures
        for loss, settings in recipe.losses.items():
            if loss_class(loss).reads_cache and hasattr(settings, "temperature"):
                cache.require_temperature(settings.temperature,
                                          f"kd.students.{recipe.name}.losses.{loss}.temperature")
    sources = ["references"] * len(tokenized["train"])  # each training row's target source
    if recipe.summaries:  # sequence-level KD: the teacher's (or a file's) summaries replace or join the references
        train_set, sources = summary_training_set(
            recipe, tokenized, tokenizer, teacher_id=teacher_id, teacher_targets_dir=teacher_targets_dir,
            max_target_length=max_target_length)
        tokenized = DatasetDict({**tokenized, "train": train_set})
        log.info("%s: trains on the summaries in %s of %s (per_article %d, teacher_share %s, with_references %s): "
                 "%d training examples", recipe.name, recipe.targets, list(recipe.target_splits), recipe.per_article,
                 recipe.teacher_share, recipe.with_references, len(tokenized["train"]))
    device = pick_device(train)
    accelerator = make_accelerator(device)
    # Attention weights exist only with eager attention; otherwise train.attn_implementation decides.
    attn = "eager" if "attentions" in recipe.needs else resolve_attention(train.attn_implementation, device)
    teacher = load_model(teacher_path, attn_implementation=attn) if recipe.needs_teacher_model else None
    model = build_model(spec, tokenizer, seed=train.seed, attn_implementation=attn, teacher=teacher,
                        section=f"kd.students.{recipe.name}.student")
    if teacher is not None and recipe.losses:
        check_same_vocab(teacher, model)
    if cache is not None and cache.manifest["vocab_size"] != model.config.vocab_size:
        raise ConfigError(f"{teacher_outputs_dir}: cached for a vocabulary of {cache.manifest['vocab_size']} "
                          f"tokens, but the student has {model.config.vocab_size}")
    objective = build_objective(recipe, teacher.config if teacher is not None else None, model.config, sources)
    teacher_seconds = 0.0
    if recipe.once:  # the teacher's top-k over this recipe's own training set, computed once, then read
        tick = time.perf_counter()
        cache = teacher_pass_once(recipe, teacher, tokenizer, tokenized["train"], teacher_id=teacher_id,
                                  device=teacher_device or accelerator.device, out_dir=Path(ckpt_dir) / TOPK_DIR)
        teacher_seconds = time.perf_counter() - tick
        log.info("%s: teacher's top-%d over %d training examples in %.1f s", recipe.name, cache.manifest["k"],
                 cache.manifest["n_examples"], teacher_seconds)
        source = cache
    elif cache is not None:
        log.info("%s: logit KD from cached teacher outputs %s (top-%d)", recipe.name, teacher_outputs_dir,
                 cache.manifest["k"])
        source = cache
    elif recipe.losses:
        source = LiveTeacher(freeze_teacher(teacher, teacher_device or accelerator.device))
    else:
        source = None  # the teacher was only needed to shrink from
    del teacher
    return train_and_save(name=f"student_{recipe.name}", model=model, teacher=source, objective=objective,
                          tokenizer=tokenizer, tokenized=tokenized, spec=spec, train=train,
                          accelerator=accelerator, out_dir=out_dir, ckpt_dir=ckpt_dir, live_dir=live_dir,
                          resume_from=resume_from,
                          fingerprint_of={"recipe": recipe.to_json(), "teacher": teacher_id},
                          extra_files={RECIPE_FILE: recipe.to_json(),
                                       # replaces the special-tokens-only file save_pretrained wrote
                                       "generation_config.json": served_generation(model, max_target_length)},
                          hooks=hooks, teacher_seconds=teacher_seconds)


def served_generation(model, max_new_tokens: int) -> dict:
    """A student's generation_config.json: greedy, up to `max_new_tokens` (tokenizer.max_target_length,
    the summary length it learned), so `from_pretrained` + `generate()` decodes as the report's served
    rows do. Greedy because a distilled student is served that way (it keeps most of the beam
    teacher's rougeL at a fraction of beam search's cost); the benchmark passes its own num_beams."""
    from kd.training.run import saved_generation_config

    config = saved_generation_config(model, num_beams=1, do_sample=False, max_new_tokens=max_new_tokens)
    return config.to_diff_dict()


def summary_training_set(recipe: Recipe, tokenized: DatasetDict, tokenizer, *, teacher_id: Optional[str],
                         teacher_targets_dir: Path, max_target_length: int):
    """The training set of a recipe that learns from summaries: the teacher_generate stage's (checked
    against the teacher, tokenizer and data, and against what was generated) or a file's (tokenized
    here with the student's tokenizer), for the articles of its target_splits, after train's references
    when with_references."""
    where = f"kd.students.{recipe.name}"
    missing = [s for s in recipe.target_splits if s not in tokenized]
    if missing:
        raise ConfigError(f"params: {where}.target_splits names {missing}, but the data has no such pool "
                          f"(set its size in the data section, e.g. data.builtin.unlabeled_size)")
    if recipe.teacher_targets:
        check_generated(read_manifest(teacher_targets_dir), splits=recipe.target_splits,
                        per_article=recipe.per_article, where=where)
        labels = {split: read_targets(teacher_targets_dir, split=split, per_article=recipe.per_article,
                                      identity=cache_identity(teacher_id=teacher_id, tokenizer=tokenizer,
                                                              train_ds=tokenized[split]))
                  for split in recipe.target_splits}
    else:
        labels = file_labels(recipe, tokenized, tokenizer, max_target_length=max_target_length)
    train = tokenized["train"]
    pieces = {split: with_summaries(tokenized[split], labels[split]) for split in recipe.target_splits}
    train_set = training_split(train, pieces, share=recipe.teacher_share, with_references=recipe.with_references,
                               seed=recipe.train.seed, train_summaries=labels.get("train"))
    sources = training_sources(len(train), {split: len(piece) for split, piece in pieces.items()},
                               share=recipe.teacher_share, with_references=recipe.with_references,
                               seed=recipe.train.seed)
    assert len(sources) == len(train_set), (len(sources), len(train_set))
    return train_set, sources


# Where a teacher_pass: once recipe keeps the teacher's top-k, inside its checkpoint directory (scratch,
# rewritten by every run: never a DVC output).
TOPK_DIR = "teacher_topk"


def teacher_pass_once(recipe: Recipe, teacher, tokenizer, train_set, *, teacher_id: str, device,
                      out_dir: Path) -> TeacherCache:
    """Run the frozen teacher once over `train_set` (the recipe's own training rows, in order) and keep its
    top-k logits per target token (kd.teacher.cache.write_cache, the teacher_outputs stage's format) at the
    temperatures the recipe's logit losses use; returns the cache, checked against this run's inputs."""
    from kd.training.loop import make_collator

    identity = cache_identity(teacher_id=teacher_id, tokenizer=tokenizer, train_ds=train_set, with_size=False)
    frozen = freeze_teacher(teacher, device)
    write_cache(out_dir, teacher=frozen, dataset=train_set, collate=make_collator(tokenizer), batch_size=32,
                k=recipe.top_k, device=torch.device(device), temperatures=recipe.cache_temperatures(),
                manifest=identity)
    cache = TeacherCache.open(out_dir)
    cache.check(identity)
    return cache


def file_labels(recipe: Recipe, tokenized: DatasetDict, tokenizer, *, max_target_length: int) -> dict:
    """{split: per article, the label ids of its summaries in the recipe's file}: every id must be an
    article of target_splits, and an article without a summary is an error unless `uncovered: skip`."""
    where = f"kd.students.{recipe.name}"
    path = Path(recipe.targets)
    if not path.is_file():
        raise ConfigError(f"params: {where}.targets: summaries file {path} not found")
    known = {rid: split for split in recipe.target_splits for rid in tokenized[split]["id"]}
    summaries = read_summary_file(path, known=known)
    uncovered = len(known) - len(summaries)
    if uncovered and recipe.uncovered == "error":
        first = next(rid for rid in known if rid not in summaries)
        raise ConfigError(f"{path}: no summary for {uncovered} article(s) of {list(recipe.target_splits)} (e.g. id "
                          f"{first!r}); add them, or set {where}.uncovered: skip")
    if uncovered:
        log.info("%s: %d article(s) without a summary in %s are skipped", recipe.name, uncovered, path)
    labels = {}
    for split in recipe.target_splits:
        texts = [summaries.get(rid, []) for rid in tokenized[split]["id"]]
        flat = [t for ts in texts for t in ts]
        ids = tokenizer(text_target=flat, max_length=max_target_length, truncation=True)["input_ids"] if flat else []
        it = iter(ids)
        labels[split] = [[next(it) for _ in ts] for ts in texts]
    return labels
