"""The README's results table is the committed results file, rendered (python -m kd.readme)."""

from __future__ import annotations

import subprocess
import sys

from conftest import ROOT

from kd.readme import END, START, render


def test_readme_table_matches_the_committed_results():
    out = subprocess.run([sys.executable, "-m", "kd.readme", "--check"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_render_replaces_only_the_marked_table():
    text = f"intro\n{START}\nold\n{END}\noutro\n"
    assert render(text, "| new |\n") == f"intro\n{START}\n| new |\n{END}\noutro\n"
