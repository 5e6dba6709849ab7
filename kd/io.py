"""Atomic file and directory writes, so an interrupted stage never leaves a half-written output.

Every helper writes into a temporary name in the same directory as the target (same filesystem,
so `os.replace` is atomic) and renames only once the content is complete.
"""

import contextlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator


def _parent_of(path: Path) -> Path:
    parent = path.parent
    parent.mkdir(parents=True, exist_ok=True)
    return parent


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path next to `path`; on success rename it onto `path`, on error delete it.

    For writers that need a file name (matplotlib `savefig`, pandas). The suffix of `path` is kept
    so writers that pick a format from the extension still work.
    """
    target = Path(path)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{target.name}.tmp-", suffix=target.suffix, dir=_parent_of(target)
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write `text` (UTF-8) to `path` atomically."""
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write `obj` as indented JSON (key order kept, trailing newline) to `path` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False) + "\n")


@contextlib.contextmanager
def atomic_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a fresh temp dir next to `path`; on success it replaces `path`, on error it is removed.

    An existing `path` is left untouched if the body raises. On success the old directory is first
    renamed aside (`os.replace` cannot overwrite a non-empty directory), the new one renamed into
    place, and only then the old one deleted. A crash between the two renames leaves no `path`, but
    the complete old version survives as `.<name>.old` (`previous_version` finds it); a crash never
    leaves a half-written `path`.
    """
    target = Path(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=_parent_of(target)))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    old = previous_version(target)
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(target, old)
    elif target.exists() or target.is_symlink():
        target.unlink()
    os.replace(tmp, target)
    shutil.rmtree(old, ignore_errors=True)


def previous_version(path: str | os.PathLike) -> Path:
    """Where `atomic_dir` keeps the old version of `path` while it swaps in the new one."""
    path = Path(path)
    return path.with_name(f".{path.name}.old")
