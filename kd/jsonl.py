"""The one JSON lines reader: files (plain or gzipped) and text (a file as git shows it), parsed line by
line into objects, every error naming the file and line. Writers put one `json.dumps` object per line."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Iterable, Iterator

from kd.errors import ConfigError


def parse_object(line: str, where: str) -> dict:
    """One line -> its JSON object; ConfigError naming `where` when it is not JSON or not an object."""
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        raise ConfigError(f"{where}: malformed JSON: {e.msg} at column {e.colno}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    return obj


def iter_lines(lines: Iterable[str], where: str) -> Iterator[tuple[int, dict]]:
    """(line number, object) for every non-blank line."""
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            yield lineno, parse_object(line, f"{where}:{lineno}")


def parse_jsonl(text: str, *, where: str) -> list[dict]:
    """Every object of a JSON lines text (blank lines skipped); `where` names it in errors."""
    return [obj for _, obj in iter_lines(text.splitlines(), where)]


def iter_jsonl(path) -> Iterator[tuple[int, dict]]:
    """(line number, JSON object) for every non-blank line of a `.jsonl` or `.jsonl.gz` file.

    A missing file, bytes that are not UTF-8, a line that is not JSON or not an object raise ConfigError
    naming the file (and the line). A UTF-8 byte order mark, as some editors write, is skipped.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: data file not found")
    opener = gzip.open if path.name.endswith(".gz") else open
    try:
        with opener(path, "rb") as f:
            # Bytes, decoded line by line, so an encoding error names its line.
            for lineno, raw in enumerate(f, start=1):
                where = f"{path}:{lineno}"
                try:
                    line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
                except UnicodeDecodeError as e:
                    raise ConfigError(f"{where}: not UTF-8 text (byte {raw[e.start]:#04x} at column "
                                      f"{e.start + 1}); save the file as UTF-8") from None
                if line.strip():
                    yield lineno, parse_object(line, where)
    except (OSError, EOFError) as e:  # a corrupt or truncated .gz
        raise ConfigError(f"{path}: cannot read: {e}") from None


def read_jsonl(path) -> list[dict]:
    """Every object of a JSON lines file (see iter_jsonl)."""
    return [obj for _, obj in iter_jsonl(path)]


def dumps_lines(rows: Iterable[dict]) -> str:
    """One JSON object per line, non-ASCII kept as is."""
    return "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
