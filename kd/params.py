"""Typed, validated views of params.yaml: one frozen dataclass per section.

Every stage reads only its own sections through `load_section`. Unknown keys, wrong types and
out-of-range values raise `ConfigError` naming the dotted key, before any output is touched.
"""

from __future__ import annotations

import dataclasses
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional

from ruamel.yaml import YAML, YAMLError

from kd import paths
from kd.errors import ConfigError

# ----------------------------------------------------------------------------- sections


@dataclass(frozen=True)
class BuiltinData:
    train_size: int = 2000
    validation_size: int = 200
    test_size: int = 200
    # The pools beyond the students' labelled `train` split (0: none): the teacher's own labelled
    # articles, and articles without references for the recipes that learn from the teacher's summaries.
    teacher_train_size: int = 0
    unlabeled_size: int = 0
    n_distractors: int = 3
    entity_pool: Optional[int] = None  # names per entity list (None: all); see kd/data/builtin.py


@dataclass(frozen=True)
class JsonlData:
    train: str = "data/own/train.jsonl"
    validation: str = "data/own/validation.jsonl"
    test: str = "data/own/test.jsonl"
    teacher_train: Optional[str] = None  # the teacher's own labelled pool (null: it trains on `train`)
    unlabeled: Optional[str] = None  # articles without references (only the article and id fields are read)
    article_field: str = "article"
    summary_field: str = "highlights"
    id_field: str = "id"


@dataclass(frozen=True)
class HubData:
    name: str = "abisee/cnn_dailymail"  # a hub dataset id, or a local dataset directory
    config: Optional[str] = "3.0.0"
    cache_dir: Optional[str] = None
    # The pools come from the hub's training split after its first `max_train_samples` articles (the
    # students' labelled set): the next `teacher_train_samples` for the teacher, then `unlabeled_samples`
    # whose references are dropped. 0: no such pool.
    teacher_train_samples: int = 0
    unlabeled_samples: int = 0


@dataclass(frozen=True)
class DataParams:
    source: str = "builtin"  # a registered data source (kd/data/<source>.py): builtin | jsonl | hub
    seed: int = 0
    # Caps applied to every source (None keeps the whole split).
    max_train_samples: Optional[int] = None
    max_validation_samples: Optional[int] = None
    max_test_samples: Optional[int] = None
    builtin: BuiltinData = field(default_factory=BuiltinData)
    jsonl: JsonlData = field(default_factory=JsonlData)
    hub: HubData = field(default_factory=HubData)

    def __post_init__(self):
        for key in ("max_train_samples", "max_validation_samples", "max_test_samples"):
            _check(getattr(self, key) is None or getattr(self, key) > 0, f"data.{key}", "must be > 0 or null")
        _check(self.builtin.entity_pool is None or self.builtin.entity_pool >= 4,
               "data.builtin.entity_pool", "must be >= 4 or null")
        for key in ("train_size", "validation_size", "test_size"):
            _check(getattr(self.builtin, key) > 0, f"data.builtin.{key}", "must be > 0 (empty split)")
        for key in ("builtin.teacher_train_size", "builtin.unlabeled_size", "hub.teacher_train_samples",
                    "hub.unlabeled_samples"):
            section, name = key.split(".")
            _check(getattr(getattr(self, section), name) >= 0, f"data.{key}", "must be >= 0 (0: no such pool)")
        _check(self.source != "hub" or self.max_train_samples is not None
               or not (self.hub.teacher_train_samples or self.hub.unlabeled_samples), "data.max_train_samples",
               "must be set when data.hub.teacher_train_samples or unlabeled_samples is: the pools are the "
               "hub's training articles after the students' labelled ones")

    def pool_size(self, pool: str) -> Optional[int]:
        """How many articles the source gives `pool` (teacher_train or unlabeled): 0 for none, None
        for a whole jsonl file."""
        if self.source == "builtin":
            return getattr(self.builtin, f"{pool}_size")
        if self.source == "hub":
            return getattr(self.hub, f"{pool}_samples")
        if self.source == "jsonl":
            return None if getattr(self.jsonl, pool) else 0
        return 0  # another registered source gives no pools


@dataclass(frozen=True)
class TokenizerParams:
    vocab_size: int = 2000
    model_type: Literal["bpe", "unigram"] = "bpe"  # how the SentencePiece vocabulary is learned
    prefix: str = "summarize: "
    max_source_length: int = 256
    max_target_length: int = 64
    num_proc: int = 1  # worker processes that tokenize batches (1: in the stage's own process)
    # SentencePiece trains on a uniform sample of this many of its inputs (texts, long ones in pieces); every
    # text is read, the sample keeps training time and memory bounded (0: no sampling, all are kept)
    trainer_sample_size: int = 1_000_000
    # Every digit its own piece (as LLaMA's and PaLM's tokenizers do): a number is spelled from ten common
    # pieces instead of being one rare piece, so a model can learn to copy numbers it has never seen
    split_digits: bool = False

    def __post_init__(self):
        _check(self.vocab_size >= 64, "tokenizer.vocab_size", "must be >= 64")
        _check(self.max_source_length > 0, "tokenizer.max_source_length", "must be > 0")
        _check(self.max_target_length > 0, "tokenizer.max_target_length", "must be > 0")
        _check(self.num_proc >= 1, "tokenizer.num_proc", "must be >= 1")
        _check(self.trainer_sample_size == 0 or self.trainer_sample_size > 100, "tokenizer.trainer_sample_size",
               "must be 0 (no sampling) or > 100 (SentencePiece's smallest sample)")


@dataclass(frozen=True)
class ModelParams:
    """A T5 built from the fields below, loaded from `pretrained` (hub name or local dir), or (students
    only) shrunk from the trained teacher by copying a subset of its layers.

    init: auto        -> `pretrained` when it is set, else from the fields below (random weights)
          config      -> from the fields below, random weights
          pretrained  -> `from_pretrained(pretrained)`
          shrink      -> the teacher's architecture and weights with only the teacher layers listed in
                         `shrink_encoder_layers` / `shrink_decoder_layers` (empty: `num_layers` /
                         `num_decoder_layers` layers spread evenly, first and last kept), as in
                         DistilBART's `make_student`; d_model/d_ff/d_kv/num_heads come from the teacher.
    """

    init: Literal["auto", "config", "pretrained", "shrink"] = "auto"
    pretrained: Optional[str] = None
    d_model: int = 128
    d_ff: int = 512
    d_kv: int = 32
    num_layers: int = 3
    num_decoder_layers: int = 3
    num_heads: int = 4
    dropout: float = 0.1
    shrink_encoder_layers: tuple[int, ...] = ()  # teacher layer indices, 0-based (init: shrink)
    shrink_decoder_layers: tuple[int, ...] = ()
    # How long and how fast to train this model: `epochs` passes over its training set, or, when
    # `steps` is set, exactly that many optimizer steps whatever the set's size (a recipe that sees
    # every article twice gets the same steps as one that sees it once), validated after every pass
    # and at the last step.
    epochs: int = 10
    steps: Optional[int] = None
    lr: float = 1e-3
    # This model's training seed (initial weights, batch order, dropout, samples); null: train.seed.
    # Training seeds of the students alone (`kd.seeds run`) vary this, so the teacher stays fixed.
    seed: Optional[int] = None
    # When to validate and stop. `validations` checks spread evenly over the step cap (every
    # ceil(steps / validations) steps, and at the last): null validates after every pass over the
    # training set. `patience` ends training after that many checks in a row without a better
    # selection measure (train.select_by); null trains to the cap. The best check's weights are kept.
    validations: Optional[int] = None
    patience: Optional[int] = None
    # Examples per optimizer step of this model (per process); null: train.batch_size.
    batch_size: Optional[int] = None

    @property
    def source(self) -> str:
        """How the model is made: 'config', 'pretrained' or 'shrink' (resolves 'auto')."""
        if self.init == "auto":
            return "pretrained" if self.pretrained else "config"
        return self.init

    def training(self, train: "TrainParams") -> "TrainParams":
        """`train` with this model's own seed and batch size, where it has them."""
        own = {k: v for k, v in (("seed", self.seed), ("batch_size", self.batch_size)) if v is not None}
        return dataclasses.replace(train, **own) if own else train

    def check(self, section: str) -> None:
        _check(self.source != "pretrained" or bool(self.pretrained), f"{section}.pretrained",
               "must name a hub model or local dir when init is 'pretrained'")
        _check(self.source != "shrink" or section.rsplit(".", 1)[-1] == "student", f"{section}.init",
               "'shrink' copies layers of the teacher, so only the student can use it")
        for key in ("shrink_encoder_layers", "shrink_decoder_layers"):
            _check(all(i >= 0 for i in getattr(self, key)), f"{section}.{key}", "must be >= 0")
            _check(len(set(getattr(self, key))) == len(getattr(self, key)), f"{section}.{key}",
                   "must not repeat a layer")
        for key in ("d_model", "d_ff", "d_kv", "num_layers", "num_decoder_layers", "num_heads", "epochs"):
            _check(getattr(self, key) > 0, f"{section}.{key}", "must be > 0")
        teacher = section == "teacher"
        _check(self.steps is None or self.steps > 0 or (teacher and self.steps == 0), f"{section}.steps",
               "must be > 0 or null (train by epochs)" + ("; 0 takes teacher.pretrained as it is" if teacher else ""))
        _check(self.steps != 0 or self.source == "pretrained", f"{section}.steps",
               "0 takes teacher.pretrained as it is, without training: set teacher.pretrained (a hub name or a "
               "local directory)")
        _check(self.steps != 0 or self.validations is None, f"{section}.validations",
               "must be null with steps 0 (the model is validated once, as it is)")
        _check(0.0 <= self.dropout < 1.0, f"{section}.dropout", "must be in [0, 1)")
        _check(self.lr > 0, f"{section}.lr", "must be > 0")
        _check(self.validations is None or self.validations >= 1, f"{section}.validations", "must be >= 1 or null")
        _check(self.validations is None or self.steps is not None, f"{section}.validations",
               "spreads checks over a step cap: set steps too, or null (validate after every pass)")
        _check(self.patience is None or self.patience >= 1, f"{section}.patience", "must be >= 1 or null")
        _check(self.batch_size is None or self.batch_size >= 1, f"{section}.batch_size", "must be >= 1 or null")


@dataclass(frozen=True)
class TrainParams:
    batch_size: int = 16
    grad_accum: int = 1
    warmup_ratio: float = 0.1
    weight_decay: float = 0.01
    max_grad_norm: float = 1.0
    # auto: bf16 on CUDA, fp32 on CPU. fp16 overflows in T5, so it warns and uses loss scaling.
    precision: Literal["auto", "no", "bf16", "fp16"] = "auto"
    device: Literal["auto", "cpu", "cuda"] = "auto"
    seed: int = 0
    checkpoint_every: int = 50  # optimizer steps between resumable checkpoints
    gradient_checkpointing: bool = False  # recompute activations in backward: less memory, ~30% slower
    # Batches of articles of similar length (shuffled within megabatches of 50 batches, as the Hugging
    # Face Trainer's group_by_length does), so a batch pads to about its own length, not its longest.
    group_by_length: bool = False
    # auto: eager attention on CPU (the SDPA path builds T5's position-bias mask per layer, slower for
    # small models there), SDPA on CUDA. Attention-map KD always uses eager (it needs the weights).
    attn_implementation: Literal["auto", "eager", "sdpa"] = "auto"
    # Which epoch's weights are kept: the lowest validation loss, or the highest validation rougeLsum
    # of summaries generated (greedy unless select_num_beams > 1) for the first `select_samples`
    # validation examples after each epoch (kd.training.run.RougeLsumScorer).
    select_by: Literal["loss", "rougeLsum"] = "loss"
    select_samples: int = 64
    select_num_beams: int = 1
    select_max_new_tokens: int = 64
    # torch's intra-op threads in every training and generation stage: a model trained with another
    # count is another model (float sums in another order), so seeds compare only at one count.
    threads: int = 2

    def __post_init__(self):
        _check(self.batch_size > 0, "train.batch_size", "must be > 0")
        _check(self.threads >= 1, "train.threads", "must be >= 1")
        _check(self.grad_accum > 0, "train.grad_accum", "must be > 0")
        _check(0.0 <= self.warmup_ratio < 1.0, "train.warmup_ratio", "must be in [0, 1)")
        _check(self.weight_decay >= 0, "train.weight_decay", "must be >= 0")
        _check(self.max_grad_norm > 0, "train.max_grad_norm", "must be > 0")
        _check(self.checkpoint_every > 0, "train.checkpoint_every", "must be > 0")
        _check(self.select_by in ("loss", "rougeLsum"), "train.select_by",
               f"must be one of ['loss', 'rougeLsum'], got {self.select_by!r}")
        _check(self.attn_implementation in ("auto", "eager", "sdpa"), "train.attn_implementation",
               f"must be one of ['auto', 'eager', 'sdpa'], got {self.attn_implementation!r}")
        for key in ("select_samples", "select_num_beams", "select_max_new_tokens"):
            _check(getattr(self, key) > 0, f"train.{key}", "must be > 0")


LayerPairs = tuple[tuple[int, ...], ...]

# A recipe's `teacher_input`: the teacher-side artifact its distill stage depends on (dvc.yaml puts it
# in the stage's deps, which cannot be computed from the losses). The teacher model (live teacher,
# and whatever `student.init: shrink` copies) or the teacher_outputs stage's cache (logit-only KD).
TEACHER_INPUTS = (str(paths.TEACHER_DIR), str(paths.TEACHER_OUTPUTS_DIR))
# A recipe's `targets`: what the student learns to generate, named by the artifact its distill stage
# depends on. The tokenized references, or the teacher_generate stage's beam-search summaries.
TARGET_INPUTS = (str(paths.TOKENIZED_DIR), str(paths.TEACHER_TARGETS_DIR))
# The splits whose articles a student may train on (never validation or test): the students' labelled
# set and the unlabeled pool. The teacher_generate stage summarizes those its `splits` names.
TRAINING_SPLITS = ("train", "unlabeled")
# Where a training example's target comes from (StudentRecipe.source_weights): train's references, or a
# summary of an article of train or of the unlabeled pool.
SOURCES = ("references", *TRAINING_SPLITS)
# A recipe's `targets` may also be a JSON lines file of {"id", "summary"} from any system.
SUMMARY_FILE_SUFFIXES = (".jsonl", ".jsonl.gz")
# Names the benchmark and report stages use for their own rows and files.
RESERVED_STUDENT_NAMES = ("teacher", "lead3", "report", "host")
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


@dataclass(frozen=True)
class StudentRecipe:
    """One student: `kd.students.<name>` in params.yaml.

    losses         loss name -> that loss's own settings (typed and validated by its module in
                   kd/losses/, see kd.students.recipe); {} trains on the labels alone (the control)
    label_weight   weight of the label cross-entropy in the total loss
    teacher_input  models/teacher (live teacher) or data/teacher_outputs (cached top-k logits)
    targets        what the student learns to generate, named by the artifact it reads (a DVC dependency
                   of this student alone): data/tokenized (the references), data/teacher_targets (the
                   teacher_generate stage's summaries) or a JSON lines file of {"id", "summary"} written by
                   any system (tokenized with the student's tokenizer)
    target_splits  with summaries (the teacher's or a file's): whose articles they are, among train (the
                   labelled set) and unlabeled (the pool without references)
    per_article    with the teacher's summaries: how many of those it generated per article to train on
    uncovered      with a summaries file: an article of `target_splits` it has no summary for is an
                   error, or is skipped
    teacher_share  with summaries of train: the share of its examples whose target is a summary, the
                   others keep their reference (chosen with train.seed)
    with_references  with summaries: the references of train join them (its articles seen with both)
    source_weights multiplies label_weight per source of an example's target, to weight the label loss per
                   split: references (train's references), train and unlabeled (the teacher's or a file's
                   summaries of those articles); a missing source keeps 1 (e.g. {train: 0, unlabeled: 0}: the
                   label loss on the references alone, the distillation losses alone on the summaries)
    teacher_pass   live (the teacher runs on every batch) or once (logit losses only: the stage runs the
                   teacher once over this recipe's own training set and keeps its top `top_k` logits, as
                   the teacher_outputs cache does for the references)
    top_k          logits kept per token with teacher_pass: once
    student, train overrides of those sections for this student only (e.g. pretrained, init, steps, lr)
    """

    teacher_input: str
    targets: str
    target_splits: tuple[str, ...] = ("train",)
    per_article: int = 1
    uncovered: Literal["error", "skip"] = "error"
    teacher_share: float = 1.0
    with_references: bool = False
    label_weight: float = 1.0
    source_weights: dict[str, float] = field(default_factory=dict)
    teacher_pass: Literal["live", "once"] = "live"
    top_k: int = 64
    losses: dict[str, Any] = field(default_factory=dict)
    student: dict[str, Any] = field(default_factory=dict)
    train: dict[str, Any] = field(default_factory=dict)

    def check(self, where: str) -> None:
        _check(self.teacher_input in TEACHER_INPUTS, f"{where}.teacher_input",
               f"must be one of {list(TEACHER_INPUTS)}, got {self.teacher_input!r}")
        _check(self.targets in TARGET_INPUTS or self.targets.endswith(SUMMARY_FILE_SUFFIXES), f"{where}.targets",
               f"must be one of {list(TARGET_INPUTS)} or a summaries file ({' or '.join(SUMMARY_FILE_SUFFIXES)}), "
               f"got {self.targets!r}")
        _check(0.0 < self.teacher_share <= 1.0, f"{where}.teacher_share", "must be in (0, 1]")
        _check(len(self.target_splits) > 0 and set(self.target_splits) <= set(TRAINING_SPLITS)
               and len(set(self.target_splits)) == len(self.target_splits), f"{where}.target_splits",
               f"must list some of {list(TRAINING_SPLITS)}, each once, got {list(self.target_splits)}")
        _check(self.per_article >= 1, f"{where}.per_article", "must be >= 1")
        if not self.summaries:
            _check(self.teacher_share == 1.0 and not self.with_references and self.target_splits == ("train",)
                   and self.per_article == 1, f"{where}.targets",
                   f"is {self.targets} (the references), so teacher_share, with_references, target_splits and "
                   f"per_article have no effect; set targets: {paths.TEACHER_TARGETS_DIR} (or a summaries "
                   f"file) or drop them")
        _check(self.summary_file or self.uncovered == "error", f"{where}.uncovered",
               "applies to a summaries file only (targets: <file>.jsonl)")
        _check(not self.summary_file or self.per_article == 1, f"{where}.per_article",
               "applies to the teacher_generate stage's summaries; a file's lines are all used")
        _check(not (self.with_references and self.teacher_share < 1.0), f"{where}.with_references",
               "trains on both targets of every example; it cannot be combined with teacher_share < 1")
        _check(self.teacher_share == 1.0 or "train" in self.target_splits, f"{where}.teacher_share",
               "mixes summaries and references of train, but target_splits does not name train")
        _check(not (self.summaries and self.cached), f"{where}.targets",
               f"is the teacher's summaries, but teacher_input is the teacher_outputs cache, whose logits belong to the "
               f"reference tokens (the rows would not line up); use teacher_input: {paths.TEACHER_DIR}")
        _check(self.label_weight >= 0, f"{where}.label_weight", "must be >= 0")
        bad = sorted(set(self.source_weights) - set(SOURCES))
        _check(not bad, f"{where}.source_weights.{bad[0] if bad else ''}",
               f"is not a source of training targets; known: {list(SOURCES)}")
        for key, value in self.source_weights.items():
            _check(value >= 0, f"{where}.source_weights.{key}", "must be >= 0")
        _check(self.summaries or set(self.source_weights) <= {"references"}, f"{where}.source_weights",
               "weights summaries, but the recipe trains on the references alone (targets: data/tokenized)")
        _check(self.teacher_pass == "live" or not self.cached, f"{where}.teacher_pass",
               "is once, but teacher_input is already the teacher_outputs cache; use models/teacher")
        _check(self.teacher_pass == "live" or bool(self.losses), f"{where}.teacher_pass",
               "is once, but the recipe has no loss that reads the teacher")
        _check(self.top_k >= 1, f"{where}.top_k", "must be >= 1")
        _check(bool(self.losses) or self.label_weight > 0, f"{where}.label_weight",
               "must be > 0 when the recipe has no losses (nothing would be trained)")
        for name, value in self.losses.items():
            _check(value is None or isinstance(value, dict), f"{where}.losses.{name}",
                   f"must be a mapping of that loss's settings (or empty), got {type(value).__name__}")

    @property
    def teacher_targets(self) -> bool:
        """Trains (at least partly) on the teacher_generate stage's summaries."""
        return self.targets == str(paths.TEACHER_TARGETS_DIR)

    @property
    def summary_file(self) -> bool:
        """Trains on a JSON lines file of summaries written by any system."""
        return self.targets not in TARGET_INPUTS

    @property
    def summaries(self) -> bool:
        """Trains (at least partly) on summaries: the teacher_generate stage's, or a file's."""
        return self.targets != str(paths.TOKENIZED_DIR)

    @property
    def cached(self) -> bool:
        """Reads the teacher_outputs stage's cache instead of running the teacher."""
        return self.teacher_input == str(paths.TEACHER_OUTPUTS_DIR)


@dataclass(frozen=True)
class KDParams:
    # student name -> its recipe; each is one `distill@<name>` and one `benchmark@<name>` stage
    students: dict[str, StudentRecipe] = field(
        default_factory=lambda: {"baseline": StudentRecipe(teacher_input=str(paths.TEACHER_DIR),
                                                           targets=str(paths.TOKENIZED_DIR))})
    # Where the teacher runs during distillation (e.g. "cuda:1"); null: the student's device.
    teacher_device: Optional[str] = None

    def __post_init__(self):
        _check(self.teacher_device is None or self.teacher_device.split(":")[0] in ("cpu", "cuda"),
               "kd.teacher_device", "must be cpu, cuda or cuda:N (or null)")
        _check(len(self.students) > 0, "kd.students", "must name at least one student")
        for name, recipe in self.students.items():
            _check(name not in RESERVED_STUDENT_NAMES, f"kd.students.{name}",
                   f"is a reserved name ({', '.join(RESERVED_STUDENT_NAMES)} name the benchmark's own rows)")
            _check(bool(_NAME.fullmatch(name)), f"kd.students.{name}",
                   "must be letters, digits, '_' or '-' (it names a stage and a directory)")
            recipe.check(f"kd.students.{name}")

    def recipe(self, student: str) -> StudentRecipe:
        if student not in self.students:
            raise ConfigError(
                f"kd.students: unknown student {student!r}; params.yaml defines {sorted(self.students)}"
            )
        return self.students[student]


@dataclass(frozen=True)
class BenchmarkParams:
    num_beams: int = 2
    max_new_tokens: int = 64
    batch_size: int = 32
    max_samples: Optional[int] = None
    num_examples: int = 3
    warmup_batches: int = 1
    lead_n: int = 3
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The speed stage: every model timed in one run, interleaved, median of `speed_repeats` rounds
    # over the first `speed_samples` test articles.
    speed_repeats: int = 3
    speed_samples: int = 64

    def __post_init__(self):
        _check(self.speed_repeats >= 3, "benchmark.speed_repeats", "must be >= 3 (a median of at least 3)")
        for key in ("num_beams", "max_new_tokens", "batch_size", "lead_n", "speed_samples"):
            _check(getattr(self, key) > 0, f"benchmark.{key}", "must be > 0")
        _check(self.max_samples is None or self.max_samples > 0, "benchmark.max_samples", "must be > 0 or null")
        _check(self.num_examples >= 0, "benchmark.num_examples", "must be >= 0")
        _check(self.warmup_batches >= 0, "benchmark.warmup_batches", "must be >= 0")


@dataclass(frozen=True)
class TeacherOutputsParams:
    """The teacher_outputs stage: the teacher's top-k logits per target token, computed once."""

    top_k: int = 64
    batch_size: int = 32
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # The cache also stores the teacher's logsumexp at each of these temperatures, so logit KD from it
    # knows the tail's mass exactly at them; a recipe at any other temperature is refused.
    temperatures: tuple[float, ...] = (1.0, 2.0, 4.0)

    def __post_init__(self):
        _check(self.top_k >= 1, "teacher_outputs.top_k", "must be >= 1")
        _check(self.batch_size >= 1, "teacher_outputs.batch_size", "must be >= 1")
        key = "teacher_outputs.temperatures"
        _check(len(self.temperatures) > 0, key, "must list at least one temperature")
        _check(all(t > 0 for t in self.temperatures), key, f"must all be > 0, got {list(self.temperatures)}")
        _check(len(set(self.temperatures)) == len(self.temperatures), key,
               f"must not repeat a temperature, got {list(self.temperatures)}")
        _check(1.0 in self.temperatures, key,
               f"must contain 1.0 (the cache stores log-probs at T = 1), got {list(self.temperatures)}")


@dataclass(frozen=True)
class TeacherGenerateParams:
    """The teacher_generate stage: the teacher's summaries of the articles of `splits` (train, the
    unlabeled pool), `num_return_sequences` per article: the best distinct beams, or samples drawn
    with `seed` when `do_sample`. The targets of students with `targets: data/teacher_targets`."""

    splits: tuple[str, ...] = ("train",)
    num_return_sequences: int = 1
    num_beams: int = 4
    do_sample: bool = False
    temperature: float = 1.0  # sampling only
    seed: int = 0  # sampling only: every shard draws from its own seed, so a resumed run is the same
    max_new_tokens: int = 64
    length_penalty: float = 1.0
    batch_size: int = 32
    shard_size: int = 1000  # examples per resumable shard
    device: Literal["auto", "cpu", "cuda"] = "auto"

    def __post_init__(self):
        for key in ("num_beams", "max_new_tokens", "batch_size", "shard_size", "num_return_sequences"):
            _check(getattr(self, key) >= 1, f"teacher_generate.{key}", "must be >= 1")
        _check(set(self.splits) <= set(TRAINING_SPLITS) and len(set(self.splits)) == len(self.splits),
               "teacher_generate.splits",
               f"must list some of {list(TRAINING_SPLITS)} (or none), each once, got {list(self.splits)}")
        _check(self.do_sample or self.num_return_sequences <= self.num_beams, "teacher_generate.num_return_sequences",
               f"must be <= num_beams ({self.num_beams}) without sampling: the distinct beams are the summaries")
        _check(self.temperature > 0, "teacher_generate.temperature", "must be > 0")


@dataclass(frozen=True)
class LaunchParams:
    """How dvc.yaml starts the training stages (its `cmd` interpolates these); no stage reads them.

    train: "python" for one process; "accelerate launch" (plus its flags, e.g.
    "accelerate launch --multi_gpu --num_processes 4") for several GPUs or nodes.
    benchmark: the same for the benchmark stage (each process decodes a shard of the test set).
    """

    train: str = "python"
    benchmark: str = "python"


SECTIONS: dict[str, type] = {
    "data": DataParams,
    "tokenizer": TokenizerParams,
    "teacher": ModelParams,
    "student": ModelParams,
    "train": TrainParams,
    "kd": KDParams,
    "teacher_outputs": TeacherOutputsParams,
    "teacher_generate": TeacherGenerateParams,
    "benchmark": BenchmarkParams,
    "launch": LaunchParams,
}

# ----------------------------------------------------------------------------- loading


def require(ok: bool, key: str, what: str) -> None:
    """Raise ConfigError naming the dotted `key` unless `ok`; loss settings validate with it too."""
    if not ok:
        raise ConfigError(f"params: {key} {what}")


_check = require


def read_params_file(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: params file not found")
    try:
        with path.open() as f:
            # YAML 1.2, as DVC reads and rewrites this file (`dvc exp run -S`): `no` stays a string.
            raw = YAML(typ="safe", pure=True).load(f) or {}
    except YAMLError as e:
        # one line: where it broke and what broke, not ruamel's multi-line context
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
        what = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {what}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: top level must be a mapping of sections")
    unknown = sorted(set(raw) - set(SECTIONS) - {"profile"})
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {unknown}; known: {sorted(SECTIONS)}")
    return raw


def applied_profile(path: str | Path = "params.yaml") -> str | None:
    """The shipped profile the params file comes from (top-level `profile`, set by `python -m kd.profile`);
    None for the default."""
    value = read_params_file(path).get("profile")
    if value is not None and not isinstance(value, str):
        raise ConfigError(f"params: profile must be a profile name or null, got {value!r}")
    return value


def load_section(name: str, path: str | Path = "params.yaml"):
    """Parse and validate one section of the params file (missing keys take their defaults)."""
    return section_from(read_params_file(path), name)


def section_from(raw: dict[str, Any], name: str):
    """Parse and validate section `name` of an already-read params mapping."""
    section = parse(SECTIONS[name], raw.get(name) or {}, name)
    if isinstance(section, ModelParams):
        section.check(name)
    return section


def parse(cls: type, data: Any, where: str):
    """Build dataclass `cls` from a mapping, rejecting unknown keys and wrong types by dotted key."""
    if not isinstance(data, dict):
        raise ConfigError(f"params: {where} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"params: unknown key(s) {[f'{where}.{k}' for k in unknown]}; known: {sorted(names)}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    missing = [k for k in required if k not in data]
    if missing:
        raise ConfigError(f"params: {', '.join(f'{where}.{k}' for k in missing)} "
                          f"{'is' if len(missing) == 1 else 'are'} required")
    values = {k: _convert(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**values)


def _convert(tp: Any, value: Any, key: str) -> Any:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if tp is Any:  # validated later by whoever owns the value (e.g. a loss module's settings)
        return value
    if dataclasses.is_dataclass(tp):
        return parse(tp, value if value is not None else {}, key)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _convert(inner, value, key)
    if origin is Literal:
        if value not in args:
            raise ConfigError(f"params: {key} must be one of {list(args)}, got {value!r}")
        return value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params: {key} must be a list, got {type(value).__name__}")
        return tuple(_convert(args[0], v, f"{key}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params: {key} must be a mapping, got {type(value).__name__}")
        return {str(k): _convert(args[1], v if v is not None else {}, f"{key}.{k}") for k, v in value.items()}
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    # bool is a subclass of int: `epochs: true` must not pass as 1.
    if not isinstance(value, tp) or (tp is not bool and isinstance(value, bool)):
        raise ConfigError(f"params: {key} must be {tp.__name__}, got {type(value).__name__} {value!r}")
    return value
