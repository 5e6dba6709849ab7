"""Default artifact locations. Stage scripts take these as argv defaults; dvc.yaml passes the same
paths explicitly on each `cmd`, and tests/test_dvc_yaml.py checks the two agree."""

from pathlib import Path

RAW_DIR = Path("data/raw")
TOKENIZER_DIR = Path("data/tokenizer")
TOKENIZED_DIR = Path("data/tokenized")
TEACHER_DIR = Path("models/teacher")
TEACHER_OUTPUTS_DIR = Path("data/teacher_outputs")
TEACHER_TARGETS_DIR = Path("data/teacher_targets")
MODELS_DIR = Path("models")
CHECKPOINTS_DIR = Path("checkpoints")
DVCLIVE_DIR = Path("dvclive")

LOGS_DIR = Path("logs")
BENCHMARK_DIR = Path("benchmark_results")
PARAMS_FILE = Path("params.yaml")


def student_dir(name: str) -> Path:
    return MODELS_DIR / f"student_{name}"


def raw_split(split: str, raw_dir: Path = RAW_DIR) -> Path:
    return Path(raw_dir) / f"{split}.jsonl"


def stage_cost(stage: str) -> Path:
    """A teacher-side stage's cost summary ({"seconds", "threads"}), beside the training runs' summaries."""
    return DVCLIVE_DIR / stage / "metrics.json"
