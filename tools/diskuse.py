"""Bytes stored on disk by a set of files and directories, each inode counted once.

With DVC's hardlink cache (.dvc/config) an output in the workspace and its copy in .dvc/cache are
one inode under two names: `du`-style sums that walk both would count it twice. Here every regular
file is keyed by (device, inode), so the workspace plus the cache add up to what is really stored.

Sizes are apparent sizes (`st_size`): deterministic, and what a stage wrote. Symlinks are not
followed and count nothing (DVC's symlink links point into the cache, counted there when the cache
is among `paths`). Files that share extents without sharing an inode (reflinks on XFS or Btrfs)
are counted once per inode, so on those filesystems this is an upper bound.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Iterator


def _regular_files(path: Path) -> Iterator[os.stat_result]:
    """lstat of every regular file at or under `path` (symlinks neither followed nor yielded)."""
    try:
        st = path.lstat()
    except FileNotFoundError:
        return
    if stat.S_ISREG(st.st_mode):
        yield st
    elif stat.S_ISDIR(st.st_mode):
        for root, _dirs, files in os.walk(path):  # os.walk does not follow directory symlinks
            for name in files:
                try:
                    child = os.lstat(os.path.join(root, name))
                except FileNotFoundError:  # removed while we walked (a stage still writing)
                    continue
                if stat.S_ISREG(child.st_mode):
                    yield child


def disk_usage(paths: Iterable[str | os.PathLike]) -> int:
    """Apparent bytes of every regular file under `paths` (files or directories; missing ones count
    0), each (device, inode) once, however many names or paths reach it."""
    seen: dict[tuple[int, int], int] = {}
    for path in paths:
        for st in _regular_files(Path(path)):
            seen[(st.st_dev, st.st_ino)] = st.st_size
    return sum(seen.values())
