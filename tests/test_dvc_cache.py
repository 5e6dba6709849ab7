"""The repo's DVC cache settings keep each output once on disk (workspace and .dvc/cache share inodes),
through reruns, experiments and checkouts; and tools.diskuse counts what is really stored."""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from tools.diskuse import disk_usage

DVC = [sys.executable, "-m", "dvc"]

# A stage as ours are written: outputs replaced through kd.io.atomic_dir (temp dir, rename, old dir
# removed), one file that changes with the param and one that never does (its content is already in
# the cache on every rerun), and a persisted uncached history, like the training stages' dvclive summary.
STAGE = '''
import json, sys
from pathlib import Path
import yaml
from kd.io import atomic_dir, atomic_write_json
n = yaml.safe_load(open("params.yaml"))["n"]
with atomic_dir("out") as tmp:
    (tmp / "data.bin").write_bytes(bytes([n]) * 8192)
    (tmp / "fixed.json").write_text('{"unchanged": true}\\n')
history = Path("history.json")
atomic_write_json(history, (json.loads(history.read_text()) if history.exists() else []) + [n])
'''
DVC_YAML = {"stages": {"make": {"cmd": "python make.py", "deps": ["make.py"], "params": ["n"],
                                "outs": ["out", {"history.json": {"cache": False, "persist": True}}]}}}


def sh(cmd, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT), TQDM_DISABLE="1")
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc.stdout + proc.stderr


def cache_object(repo: Path, path: Path) -> Path:
    digest = hashlib.md5(path.read_bytes()).hexdigest()
    return repo / ".dvc" / "cache" / "files" / "md5" / digest[:2] / digest[2:]


def assert_stored_once(repo: Path, n: int) -> None:
    """`out` holds version `n`, and every file of it is its cache object (one inode, read-only):
    the workspace adds no byte to what the cache holds."""
    assert (repo / "out" / "data.bin").read_bytes() == bytes([n]) * 8192
    for f in sorted((repo / "out").iterdir()):
        obj = cache_object(repo, f)
        assert obj.is_file(), f"{f.name}: not in the cache"
        assert f.stat().st_ino == obj.stat().st_ino, f"{f.name}: a second copy, not a link to {obj}"
        assert not f.stat().st_mode & (stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH), f"{f.name}: writable"
    cache = repo / ".dvc" / "cache"
    assert disk_usage([repo / "out", cache]) == disk_usage([cache])
    assert not [p.name for p in repo.iterdir() if p.name.startswith(".out.")]  # atomic_dir left no temp/old dir


def set_n(repo: Path, n: int) -> None:
    (repo / "params.yaml").write_text(f"n: {n}\n")


def commit(repo: Path, message: str) -> str:
    sh(["git", "add", "-A"], repo)
    sh(["git", "commit", "-qm", message], repo)
    return sh(["git", "rev-parse", "HEAD"], repo).strip()


def test_repo_config_links_outputs_to_the_cache():
    """hardlink, then symlink (cache on another filesystem); no reflink (ext4 has none, and listed first
    it makes DVC copy each new output into the cache before linking it) and no copy (with copy in the
    list DVC keeps an output whose content the cache already has as a second copy)."""
    config = configparser.ConfigParser()
    config.read(ROOT / ".dvc" / "config")
    assert [t.strip() for t in config["cache"]["type"].split(",")] == ["hardlink", "symlink"]


def test_disk_usage_counts_each_inode_once(tmp_path):
    (tmp_path / "a").write_bytes(b"x" * 100)
    os.link(tmp_path / "a", tmp_path / "hard")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"y" * 30)
    os.link(tmp_path / "sub" / "b", tmp_path / "sub" / "b2")
    (tmp_path / "sub" / "link").symlink_to(tmp_path / "a")  # symlinks count nothing
    assert disk_usage([tmp_path]) == 130
    assert disk_usage([tmp_path / "a", tmp_path / "hard", tmp_path / "sub", tmp_path / "missing"]) == 130
    assert disk_usage([tmp_path / "sub" / "link"]) == 0
    shutil.copy(tmp_path / "a", tmp_path / "copy")  # a copy is a second inode
    assert disk_usage([tmp_path]) == 230


def make_repo(repo: Path, *, n: int) -> Path:
    """A git + DVC repo holding the one-stage pipeline above, with its param set to `n`."""
    repo.mkdir()
    (repo / "make.py").write_text(STAGE)
    (repo / "dvc.yaml").write_text(yaml.safe_dump(DVC_YAML, sort_keys=False))
    set_n(repo, n)
    sh(["git", "init", "-q"], repo)
    sh(["git", "config", "user.email", "t@example.com"], repo)
    sh(["git", "config", "user.name", "test"], repo)
    sh(DVC + ["init", "-q"], repo)
    return repo


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_outputs_are_stored_once_through_reruns_experiments_and_checkouts(tmp_path):
    repo = make_repo(tmp_path / "repo", n=1)
    shutil.copy(ROOT / ".dvc" / "config", repo / ".dvc" / "config")  # this repo's cache settings
    commit(repo, "stage")

    sh(DVC + ["repro"], repo)
    assert_stored_once(repo, 1)
    v1 = commit(repo, "n=1")
    first = cache_object(repo, repo / "out" / "data.bin")

    # A params change: DVC removes the read-only output, the stage writes a new one, both versions stay.
    set_n(repo, 2)
    assert "Running stage 'make'" in sh(DVC + ["repro"], repo)
    assert_stored_once(repo, 2)
    assert first.is_file() and first != cache_object(repo, repo / "out" / "data.bin")
    assert json.loads((repo / "history.json").read_text()) == [1, 2]  # persist: kept across the rerun
    v2 = commit(repo, "n=2")

    sh(DVC + ["exp", "run", "-S", "n=3"], repo)  # in the workspace
    assert_stored_once(repo, 3)
    sh(DVC + ["exp", "run", "--temp", "-S", "n=4", "-n", "four"], repo)  # in a temp copy, as kd.seeds runs them
    assert_stored_once(repo, 3)  # the workspace is untouched
    sh(DVC + ["exp", "apply", "four"], repo)
    assert_stored_once(repo, 4)

    for rev, n in ((v1, 1), (v2, 2)):
        sh(["git", "checkout", "-q", "-f", rev], repo)
        sh(DVC + ["checkout"], repo)
        assert_stored_once(repo, n)
        assert "up to date" in sh(DVC + ["status"], repo)


def test_a_team_shares_outputs_through_a_remote_and_a_shared_cache(tmp_path):
    """What docs/experiments.md shows: `dvc remote add` + `dvc push` in one clone, `dvc pull` in
    another (nothing reruns), and a second clone using a shared cache directory gets the outputs with
    `dvc checkout` alone."""
    repo, remote, shared = make_repo(tmp_path / "repo", n=5), tmp_path / "remote", tmp_path / "shared-cache"
    sh(DVC + ["remote", "add", "-d", "storage", str(remote)], repo)
    sh(DVC + ["repro"], repo)
    commit(repo, "results")
    sh(DVC + ["push"], repo)

    clone = tmp_path / "clone"
    sh(["git", "clone", "-q", str(repo), str(clone)], tmp_path)
    sh(DVC + ["pull"], clone)
    assert (clone / "out" / "data.bin").read_bytes() == bytes([5]) * 8192
    assert "Running stage" not in sh(DVC + ["repro"], clone)  # pulled outputs are up to date

    # A shared cache: one clone fills it, another only links to it.
    for name in ("a", "b"):
        sh(["git", "clone", "-q", str(repo), str(tmp_path / name)], tmp_path)
        sh(DVC + ["cache", "dir", str(shared)], tmp_path / name)
        sh(DVC + ["config", "cache.shared", "group"], tmp_path / name)
        sh(DVC + ["config", "cache.type", "symlink"], tmp_path / name)
    sh(DVC + ["pull"], tmp_path / "a")
    sh(DVC + ["checkout"], tmp_path / "b")
    data = tmp_path / "b" / "out" / "data.bin"
    assert data.read_bytes() == bytes([5]) * 8192 and data.is_symlink()
    assert str(data.resolve()).startswith(str(shared))
