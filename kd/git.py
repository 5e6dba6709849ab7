"""The one git helper: every git command the project runs goes through `git()`."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path
from typing import Mapping

from kd.errors import ConfigError


def git(repo: str | Path, *args: str, env: Mapping[str, str] | None = None, binary: bool = False) -> str | bytes:
    """`git -C repo args...`'s standard output (text, or bytes with `binary`); a failure is a ConfigError
    quoting the command and git's message."""
    try:
        out = subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, text=not binary,
                             env=None if env is None else dict(env))
    except FileNotFoundError:
        raise ConfigError("git is not installed (or not on PATH)") from None
    except subprocess.CalledProcessError as e:
        message = e.stderr.decode(errors="replace") if binary else e.stderr
        raise ConfigError(f"git {shlex.join(args)} failed: {message.strip()}") from None
    return out.stdout


def show(repo: str | Path, rev: str, path: str) -> str:
    """The text of `path` as committed at `rev`."""
    return git(repo, "show", f"{rev}:{path}")


def ls_tree(repo: str | Path, rev: str, folder: str) -> list[str]:
    """The file paths under `folder` at `rev` (recursively), repository-relative."""
    listing = git(repo, "ls-tree", "-r", "-z", "--full-tree", "--name-only", rev, "--", f"{folder.rstrip('/')}/")
    return [p for p in listing.split("\0") if p]
