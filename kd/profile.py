"""Apply a shipped params profile: its keys overwrite those in params.yaml, everything else (and
every comment) stays. `dvc repro` then reruns exactly the stages whose params changed.

    python -m kd.profile --list
    python -m kd.profile quick --exp            # a smoke run of the whole pipeline as a DVC experiment
    python -m kd.profile cnndm-t5-base-small    # the real job (docs/real-job.md)
    git checkout params.yaml                    # back to the default

With `--exp [--name NAME]` the profile runs as a DVC experiment in a temporary directory (`dvc exp run
--temp`) and params.yaml is given back as it was: the work tree is left as it was found (the default's
results, dvc.lock and dvclive files untouched; the stages' logs go to logs/NAME/), and `dvc exp show`
lists the run beside the default's (`dvc exp apply NAME` brings it into the workspace).

A profile is applied only to a params.yaml without uncommitted changes (your own edits would be mixed
into the profile's, and `git checkout params.yaml` would no longer take you back); `--force` skips it.

Profiles live in kd/profiles/<name>.yaml and name only keys params.yaml already has; the result is
validated section by section before params.yaml is replaced (atomically).
"""

from __future__ import annotations

import argparse
import io
import sys
from pathlib import Path
from typing import Sequence

from ruamel.yaml import YAML

from kd import paths
from kd.errors import ConfigError
from kd.io import atomic_write_text

PROFILES_DIR = Path(__file__).resolve().parent / "profiles"
# Mappings a profile replaces whole instead of merging key by key: its own set of student recipes.
REPLACED = frozenset({"kd.students"})


def available() -> list[str]:
    return sorted(p.stem for p in PROFILES_DIR.glob("*.yaml"))


def merge(base, override, where: str = "") -> None:
    """Overwrite `base`'s keys with `override`'s, recursing into mappings (in place)."""
    for key, value in override.items():
        dotted = f"{where}{key}"
        if key not in base or dotted == "profile":
            raise ConfigError(f"profile: {dotted} is not a key of params.yaml a profile sets")
        if isinstance(value, dict) and isinstance(base[key], dict) and dotted not in REPLACED:
            merge(base[key], value, f"{dotted}.")
        else:
            base[key] = value


def uncommitted(params_path: Path) -> bool:
    """Whether git sees changes to `params_path` not yet committed (False outside a git work tree)."""
    from kd.git import git

    folder = Path(params_path).resolve().parent
    try:
        if git(folder, "rev-parse", "--is-inside-work-tree").strip() != "true":
            return False
    except ConfigError:
        return False
    return bool(git(folder, "status", "--porcelain", "--", Path(params_path).name).strip())


def run_as_experiment(name: str, params_path: Path = paths.PARAMS_FILE, *, exp_name: str | None = None,
                      dvc: Sequence[str] | None = None, force: bool = False) -> int:
    """Apply the profile, run it as a DVC experiment in a temporary directory (`dvc exp run --temp`, which
    reads the workspace's params.yaml), then write params.yaml back as it was, whatever the run did.
    Returns the experiment run's exit status."""
    import os
    import subprocess

    from kd.cli import LOG_DIR_ENV

    params_path = Path(params_path)
    original = params_path.read_text()
    apply(name, params_path, force=force)
    workspace = params_path.resolve().parent
    # The stages' logs stay in the workspace (gitignored), not in the temporary directory DVC removes.
    logs = workspace / paths.LOGS_DIR / (exp_name or name)
    try:
        cmd = [*(dvc or (sys.executable, "-m", "dvc")), "exp", "run", "--temp", *(["--name", exp_name] if exp_name else [])]
        return subprocess.run(cmd, cwd=workspace, env={**os.environ, LOG_DIR_ENV: str(logs)}).returncode
    finally:
        atomic_write_text(params_path, original)


def apply(name: str, params_path: Path = paths.PARAMS_FILE, *, force: bool = False) -> None:
    from kd.params import SECTIONS, section_from

    profile = PROFILES_DIR / f"{name}.yaml"
    if not profile.is_file():
        raise ConfigError(f"profile {name!r} not found; available: {available()}")
    if not force and uncommitted(params_path):
        raise ConfigError(f"{params_path} has uncommitted changes: commit them (or drop them with "
                          f"`git checkout {Path(params_path).name}`) before applying a profile, or pass --force")
    yaml = YAML()  # round trip: comments and key order survive
    yaml.version = (1, 2)
    yaml.representer.add_representer(  # write null as `null`, as params.yaml does, not as nothing
        type(None), lambda r, _: r.represent_scalar("tag:yaml.org,2002:null", "null"))
    base = yaml.load(Path(params_path).read_text())
    merge(base, yaml.load(profile.read_text()))
    base["profile"] = name  # recorded, so results made under a profile are never taken for the default's
    buffer = io.StringIO()
    yaml.dump(base, buffer)
    text = buffer.getvalue().removeprefix("%YAML 1.2\n---\n")
    # Validate the merged params, read back as the stages will read them, before anything is replaced.
    merged = YAML(typ="safe", pure=True).load(text)
    for section in SECTIONS:
        section_from(merged, section)
    _check_recipes(merged)
    atomic_write_text(params_path, text)


def _check_recipes(merged: dict) -> None:
    """Every student recipe of the result resolves (loss names and settings, overrides), and asks only for
    teacher summaries that teacher_generate makes."""
    from kd.params import section_from
    from kd.students.recipe import check_teacher_summaries, resolve

    kd, student, train = (section_from(merged, s) for s in ("kd", "student", "train"))
    for name in kd.students:
        resolve(name, kd, student, train)
    check_teacher_summaries(kd, section_from(merged, "teacher_generate"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", nargs="?", help="a profile in kd/profiles/")
    p.add_argument("--params", type=Path, default=paths.PARAMS_FILE)
    p.add_argument("--list", action="store_true", help="list the shipped profiles")
    p.add_argument("--force", action="store_true", help="apply even when params.yaml has uncommitted changes")
    p.add_argument("--exp", action="store_true",
                   help="run the profile as a DVC experiment (dvc exp run --temp) and leave the work tree as it was")
    p.add_argument("--name", dest="exp_name", help="with --exp: the experiment's name (default: one DVC picks)")
    args = p.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available()))
        return 0
    try:
        if args.exp:
            rc = run_as_experiment(args.name, args.params, exp_name=args.exp_name, force=args.force)
            print("params.yaml is as it was; `dvc exp show` lists the run" if rc == 0 else
                  f"the experiment failed (exit {rc}); params.yaml is as it was", file=sys.stderr)
            return rc
        apply(args.name, args.params, force=args.force)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"applied profile {args.name} to {args.params}; run `dvc repro` (or `dvc exp run`); "
          f"back to the default: `git checkout {args.params.name}`")
    return 0


if __name__ == "__main__":
    sys.exit(main())
