"""A student's recipe, resolved: `kd.students.<name>` from params.yaml with every loss's settings typed
by its own module, and the `student` / `train` sections with the recipe's overrides applied.

Everything is validated here, before any data or model is loaded, with errors naming the dotted key
(`kd.students.seqkd_logit.losses.logit.temperature`). The resolved recipe is what a student is trained
with: it is saved beside the model (`recipe.json`) and fingerprints the run's checkpoints.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Mapping

from kd import paths
from kd.losses.registry import loss_class
from kd.losses.base import LossSettings
from kd.training.objective import Objective
from kd.params import KDParams, ModelParams, StudentRecipe, TrainParams, parse, require

RECIPE_FILE = "recipe.json"


@dataclass(frozen=True)
class Recipe:
    name: str
    label_weight: float
    losses: dict[str, LossSettings]
    teacher_input: str
    targets: str  # data/tokenized (references), data/teacher_targets (the teacher's summaries) or a file's
    target_splits: tuple[str, ...]  # with summaries: whose articles (train, unlabeled)
    per_article: int  # with the teacher's summaries: how many per article
    uncovered: str  # with a summaries file: an article without one is an "error" or is "skip"ped
    teacher_share: float  # with summaries of train: share of its examples trained on a summary
    with_references: bool  # with summaries: train's references join them
    student: ModelParams  # the student section with this recipe's overrides
    train: TrainParams  # the train section with this recipe's overrides
    cached: bool  # reads the teacher_outputs cache instead of running the teacher
    source_weights: dict[str, float]  # label_weight's multiplier per target source (missing: 1)
    teacher_pass: str  # live | once (the stage caches the teacher's top_k over its own training set)
    top_k: int

    @property
    def weights_sources(self) -> bool:
        """The label loss is weighted per example (some source's multiplier is not 1)."""
        return any(w != 1.0 for w in self.source_weights.values())

    def cache_temperatures(self) -> tuple[float, ...]:
        """The temperatures a teacher_pass: once cache needs: 1.0 and each logit loss's own."""
        return tuple(sorted({1.0, *(float(s.temperature) for s in self.losses.values() if hasattr(s, "temperature"))}))

    @property
    def teacher_targets(self) -> bool:
        return self.targets == str(paths.TEACHER_TARGETS_DIR)

    @property
    def summaries(self) -> bool:
        """Learns from summaries (the teacher_generate stage's or a file's), not the references alone."""
        return self.targets != str(paths.TOKENIZED_DIR)

    @property
    def needs(self) -> frozenset[str]:
        return frozenset().union(*(loss_class(n).needs for n in self.losses))

    @property
    def needs_teacher_model(self) -> bool:
        """The teacher model is loaded: for live losses, or to shrink the student from it."""
        return (bool(self.losses) and not self.cached) or self.student.source == "shrink"

    @property
    def once(self) -> bool:
        """The stage runs the teacher once over the training set and reads its top-k from then on."""
        return self.teacher_pass == "once"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "label_weight": self.label_weight, "teacher_input": self.teacher_input,
                "targets": self.targets, "target_splits": list(self.target_splits), "per_article": self.per_article,
                "uncovered": self.uncovered, "teacher_share": self.teacher_share,
                "with_references": self.with_references, "source_weights": dict(self.source_weights),
                "teacher_pass": self.teacher_pass, "top_k": self.top_k,
                "losses": {n: dataclasses.asdict(s) for n, s in self.losses.items()},
                "student": dataclasses.asdict(self.student), "train": dataclasses.asdict(self.train)}


def resolve(name: str, kd: KDParams, student: ModelParams, train: TrainParams) -> Recipe:
    """The recipe of student `name`, every value validated; raises ConfigError naming the key."""
    raw: StudentRecipe = kd.recipe(name)
    where = f"kd.students.{name}"
    losses = parse_losses(raw.losses, f"{where}.losses")
    if raw.cached:
        require(bool(losses), f"{where}.teacher_input",
                "is the teacher_outputs cache, but the recipe has no loss that reads it; use models/teacher")
        live_only = sorted(n for n in losses if not loss_class(n).reads_cache)
        require(not live_only, f"{where}.teacher_input",
                f"is the teacher_outputs cache (top-k logits), but loss(es) {live_only} need the live "
                f"teacher; use models/teacher")
    if raw.teacher_pass == "once":
        live_only = sorted(n for n in losses if not loss_class(n).reads_cache)
        require(not live_only, f"{where}.teacher_pass",
                f"is once (the teacher's top-k logits, cached), but loss(es) {live_only} need the live teacher; "
                f"use live")
    spec = _override(ModelParams, student, raw.student, f"{where}.student")
    spec.check(f"{where}.student")
    return Recipe(name=name, label_weight=raw.label_weight, losses=losses, teacher_input=raw.teacher_input,
                  targets=raw.targets, target_splits=raw.target_splits, per_article=raw.per_article,
                  uncovered=raw.uncovered, teacher_share=raw.teacher_share, with_references=raw.with_references,
                  student=spec, train=spec.training(_override(TrainParams, train, raw.train, f"{where}.train")),
                  cached=raw.cached, source_weights=dict(raw.source_weights), teacher_pass=raw.teacher_pass,
                  top_k=raw.top_k)


def _override(cls, base, overrides: dict, where: str):
    """`base` (a section) with `overrides` applied, parsed and validated like the section itself."""
    unknown = sorted(set(overrides) - {f.name for f in dataclasses.fields(cls)})
    require(not unknown, f"{where}.{unknown[0] if unknown else ''}",
            f"is not a key of that section; known: {sorted(f.name for f in dataclasses.fields(cls))}")
    merged = {f.name: getattr(base, f.name) for f in dataclasses.fields(cls)} | dict(overrides)
    return parse(cls, {k: list(v) if isinstance(v, tuple) else v for k, v in merged.items()}, where)


def parse_losses(raw: Mapping[str, Any], where: str) -> dict[str, LossSettings]:
    """{loss name: its settings mapping} -> {loss name: its typed, validated Settings}."""
    losses = {}
    for loss, settings in raw.items():
        cls = loss_class(loss, where=f"{where}.{loss}")
        losses[loss] = parse(cls.Settings, settings or {}, f"{where}.{loss}")
        losses[loss].check(f"{where}.{loss}")
    return losses


def make_objective(losses: Mapping[str, LossSettings], *, label_weight: float = 1.0, teacher_config=None,
                   student_config=None, where: str = "losses", row_weights=None) -> Objective:
    """The objective of these losses, built for these model configs (layer maps, projections: checked
    here, with errors naming `where.<loss>.<setting>`)."""
    distillers = {n: loss_class(n).from_settings(s, teacher_config, student_config, where=f"{where}.{n}")
                  for n, s in losses.items()}
    return Objective(distillers, weights={n: s.weight for n, s in losses.items()}, label_weight=label_weight,
                     row_weights=row_weights)


def build_objective(recipe: Recipe, teacher_config=None, student_config=None, sources=None) -> Objective:
    """The recipe's objective; `sources` (each training row's target source, kd.teacher.targets.training_sources)
    weights the label loss per row when the recipe's source_weights say so."""
    row_weights = None
    if recipe.weights_sources:
        import torch

        row_weights = torch.tensor([recipe.source_weights.get(s, 1.0) for s in sources], dtype=torch.float32)
    return make_objective(recipe.losses, label_weight=recipe.label_weight, teacher_config=teacher_config,
                          student_config=student_config, where=f"kd.students.{recipe.name}.losses",
                          row_weights=row_weights)


def check_teacher_summaries(kd: KDParams, generate) -> None:
    """Every recipe that learns from the teacher's summaries asks only for splits and counts that
    `generate` (the teacher_generate section) makes; raises ConfigError naming both keys. The distill
    stage checks the same against the stage's manifest; this checks a params file before anything runs."""
    from kd.teacher.targets import check_generated

    made = {"splits": {split: {} for split in generate.splits}, "num_return_sequences": generate.num_return_sequences}
    for name, raw in kd.students.items():
        if raw.targets == str(paths.TEACHER_TARGETS_DIR):
            check_generated(made, splits=raw.target_splits, per_article=raw.per_article, where=f"kd.students.{name}")
