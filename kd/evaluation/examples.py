"""The one reader of per-example results: benchmark_results/examples/<model>.jsonl, one row per
(split, decoding, example) with every registered metric's scores and the prediction, read from the
workspace (the report) or from a commit (seeds, mentions)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath
from typing import Iterable

from kd import paths
from kd.jsonl import dumps_lines, parse_jsonl, read_jsonl

# Where the benchmark stages write them, as a path inside the git tree.
EXAMPLES_DIR = PurePosixPath(paths.BENCHMARK_DIR.as_posix()) / "examples"


def examples_file(name: str, examples_dir: str | Path = EXAMPLES_DIR) -> Path:
    return Path(examples_dir) / f"{name}.jsonl"


def example_lines(rows: Iterable[dict]) -> str:
    """The examples file's text: one JSON line per row (split, decoding, id, scores, prediction)."""
    return dumps_lines(rows)


def read_examples_file(path: str | Path) -> list[dict]:
    """Every row of one examples file in the workspace."""
    return read_jsonl(path)


def read_committed(repo: str | Path, rev: str, model: str | None = None) -> dict[str, list[dict]]:
    """{model: rows} of every examples file committed at `rev` (only `model`'s when given)."""
    from kd.errors import ConfigError
    from kd.git import ls_tree, show

    files = [PurePosixPath(p) for p in ls_tree(repo, rev, str(EXAMPLES_DIR)) if p.endswith(".jsonl")]
    if model is not None:
        files = [f for f in files if f.stem == model]
    if not files:
        raise ConfigError(f"{rev} has no {EXAMPLES_DIR}/{model or '*'}.jsonl")
    return {f.stem: parse_jsonl(show(repo, rev, str(f)), where=f"{rev}:{f}") for f in sorted(files)}


def grouped(rows: Iterable[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(split, decoding): rows in file order}."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for row in rows:
        groups.setdefault((row["split"], row["decoding"]), []).append(row)
    return groups
