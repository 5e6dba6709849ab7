"""Budget checks, run by hand or by a scheduled job (not by the test suite: timings are not tests).

    python -m kd.bench pipeline   # fresh clone of HEAD, `dvc repro`: wall time and peak RSS
    python -m kd.bench tests      # the README's test command: wall time

Each prints a line per measurement, writes JSON (`--out`), and exits 1 when a budget is missed.
Budgets (2-core CPU, no GPU): pipeline <= 600 s with peak RSS < 4 GiB; tests <= 600 s.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BUDGETS = {"pipeline": {"wall_s": 600.0, "peak_rss_mb": 4096.0}, "tests": {"wall_s": 600.0}}


def _timed(cmd: list[str], cwd: Path) -> dict:
    env = dict(os.environ, TQDM_DISABLE="1")
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stdout[-4000:] + proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)} failed with exit status {proc.returncode}")
    # Largest resident set of any finished descendant (the stages run as DVC's children).
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {"wall_s": round(wall, 1), "peak_rss_mb": round(peak_mb, 1)}


def bench_pipeline() -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "t5-distill"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        return _timed([sys.executable, "-m", "dvc", "repro", "--force"], clone)


def bench_tests() -> dict:
    return _timed([sys.executable, "-m", "pytest", "-q"], ROOT)


CHECKS = {"pipeline": bench_pipeline, "tests": bench_tests}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("check", choices=sorted(CHECKS))
    p.add_argument("--out", type=Path, default=None, help="write the measurements as JSON here")
    args = p.parse_args(argv)
    result = CHECKS[args.check]()
    budget = BUDGETS[args.check]
    ok = all(result[k] <= limit for k, limit in budget.items())
    for key, value in result.items():
        limit = budget.get(key)
        verdict = "" if limit is None else (" ok" if value <= limit else f" OVER (budget {limit})")
        print(f"{args.check}.{key}: {value}{verdict}")
    if args.out:
        args.out.write_text(json.dumps({"check": args.check, **result, "budget": budget, "ok": ok}, indent=2) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
