"""Run a command and measure its wall time and peak RSS, from a small process of its own.

    python -m tools.peakrss OUT.json -- python stages/tokenize.py ...

Why a launcher: Linux carries a process's high-water RSS across fork and exec (exec records the old
address space's peak, and a forked child starts as a copy of its parent), so `os.wait4` on a stage
started straight from a big process (the rehearsal holds t5-base stand-ins, pytest holds torch) reports
at least the parent's RSS. Started from this launcher, which imports nothing heavy, the stage's figure is
its own: the largest process of its tree (wait4 reports the child and the descendants it waited for).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path


def measure(cmd: list[str], **popen) -> dict:
    """{"returncode", "wall_s", "peak_rss_mb"} of `cmd` run from this process (`popen`: Popen's keywords)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, **popen)
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait for it again
    return {"returncode": proc.returncode, "wall_s": round(time.perf_counter() - start, 3),
            "peak_rss_mb": round(usage.ru_maxrss / 1024, 1)}  # ru_maxrss is KiB on Linux


def measured(cmd: list[str], **popen) -> dict:
    """`measure`, but from a fresh launcher process (`python -m tools.peakrss`), so the figure is `cmd`'s own
    whatever this process holds. `popen` (cwd, env, stdout, stderr) applies to the launcher, which the
    command inherits."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "measure.json"
        env = dict(popen.pop("env", None) or os.environ)
        # The launcher must import kd from this checkout, whatever the command's working directory.
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1]),
                                                           env.get("PYTHONPATH")]))
        subprocess.run([sys.executable, "-m", "tools.peakrss", str(out), "--", *cmd], env=env, **popen)
        if not out.is_file():
            raise RuntimeError(f"tools.peakrss wrote no measurement for {cmd[:3]}")
        return json.loads(out.read_text())


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) < 3 or argv[1] != "--":
        print("usage: python -m tools.peakrss OUT.json -- COMMAND [ARGS...]", file=sys.stderr)
        return 2
    result = measure(argv[2:])
    Path(argv[0]).write_text(json.dumps(result) + "\n")
    return result["returncode"]


if __name__ == "__main__":
    sys.exit(main())
