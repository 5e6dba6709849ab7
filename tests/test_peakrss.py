"""tools.peakrss: a command's peak RSS is its own, not the high-water mark of the process that started it."""

from __future__ import annotations

import sys

from tools.peakrss import measure, measured

ALLOCATE_100MB = "x = bytearray(100 << 20); x[::4096] = b'\\1' * len(x[::4096])"  # touched, so resident


def test_launcher_reports_the_commands_own_peak_not_the_parents():
    parent = bytearray(400 << 20)
    parent[::4096] = b"\1" * len(parent[::4096])  # this process now holds 400 MB more
    cmd = [sys.executable, "-c", ALLOCATE_100MB]
    direct, launched = measure(cmd), measured(cmd)
    # Started straight from here, the child inherits this process's high-water mark (the reason for tools.peakrss).
    assert direct["peak_rss_mb"] > 400
    assert 100 < launched["peak_rss_mb"] < 200
    assert launched["returncode"] == 0 and launched["wall_s"] > 0
    del parent


def test_launcher_passes_the_exit_status_through(tmp_path):
    out = measured([sys.executable, "-c", "import sys; sys.exit(3)"], cwd=tmp_path)
    assert out["returncode"] == 3
