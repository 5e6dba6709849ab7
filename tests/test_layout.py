"""The shape of the code: the library (kd/) never imports the tools (tools/), has no import cycles and
no eager subpackage __init__; git runs and JSON lines are parsed in one module each; a stage imports the
kd of the checkout it runs in; a new metric is one registered function that every consumer picks up."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

SOURCES = sorted([*ROOT.glob("kd/**/*.py"), *ROOT.glob("tools/*.py"), *ROOT.glob("stages/*.py")])


def _module(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, *, top_level_only: bool = False) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found |= {node.module} | {f"{node.module}.{a.name}" for a in node.names}
    return found


def test_the_library_never_imports_the_tools():
    offenders = {_module(p): sorted(m for m in _imports(p) if m == "tools" or m.startswith("tools."))
                 for p in ROOT.glob("kd/**/*.py")}
    assert not {m: i for m, i in offenders.items() if i}


def test_no_import_cycles_in_the_library():
    files = {_module(p): p for p in ROOT.glob("kd/**/*.py")}
    graph = {m: {i for i in _imports(p, top_level_only=True) if i in files and i != m} for m, p in files.items()}
    state: dict[str, int] = {}

    def visit(m, trail):
        if state.get(m) == 1:
            raise AssertionError(f"import cycle: {' -> '.join([*trail[trail.index(m):], m])}")
        if state.get(m) == 2:
            return
        state[m] = 1
        for n in sorted(graph[m]):
            visit(n, [*trail, m])
        state[m] = 2

    for m in sorted(graph):
        visit(m, [])


def test_subpackage_inits_import_nothing():
    for init in [*ROOT.glob("kd/*/__init__.py"), ROOT / "kd" / "__init__.py", ROOT / "tools" / "__init__.py",
                 ROOT / "stages" / "__init__.py"]:
        imports = [n for n in ast.parse(init.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))
                   and not (isinstance(n, ast.ImportFrom) and n.module == "__future__")]
        assert not imports, f"{init.relative_to(ROOT)} imports eagerly"


def test_git_runs_and_json_lines_are_parsed_in_one_module_each():
    git_call = re.compile(r"""\[\s*["']git["']""")
    line_parse = re.compile(r"json\.loads\(\s*\w*line|map\(\s*json\.loads|json\.loads\([^)]*splitlines")
    uses = {"git": set(), "jsonl": set()}
    for path in SOURCES:
        text = path.read_text()
        if git_call.search(text):
            uses["git"].add(path.relative_to(ROOT).as_posix())
        if line_parse.search(text):
            uses["jsonl"].add(path.relative_to(ROOT).as_posix())
    assert uses == {"git": {"kd/git.py"}, "jsonl": {"kd/jsonl.py"}}


def test_the_checks_above_can_fail(tmp_path):
    """The patterns find what they look for."""
    assert re.search(r"""\[\s*["']git["']""", 'subprocess.run(["git", "show"])')
    assert re.search(r"json\.loads\(\s*\w*line", "rows = [json.loads(line) for line in f]")


def test_a_stage_imports_the_code_of_the_checkout_it_runs_in(tmp_path):
    """`dvc exp run --temp` and queued runs execute in copies of the repository: a stage started there
    runs that copy's kd even when the workspace's kd is also importable (PYTHONPATH, as an editable
    install would make it)."""
    copy = tmp_path / "copy"
    for name in ("kd", "stages"):
        shutil.copytree(ROOT / name, copy / name, ignore=shutil.ignore_patterns("__pycache__"))
    (copy / "params.yaml").write_text("data:\n  builtin: {train_size: 3, validation_size: 2, test_size: 2}\n")
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "stages.download", "--out", "data/raw"], cwd=copy, env=env,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    code = re.search(r"code: (\S+)", (copy / "logs" / "download.log").read_text())[1]
    assert Path(code) == (copy / "kd").resolve()
    assert (copy / "data" / "raw" / "train.jsonl").is_file()


# ----------------------------------------------------------------------------- a new metric


@pytest.fixture
def toy_metric(monkeypatch):
    """A metric a user would add: one registered function (here the summary's length in characters)."""
    from kd.metrics import registry

    registry.metrics()  # the shipped metrics first, then the toy one beside them
    monkeypatch.setattr(registry.METRICS, "entries", dict(registry.METRICS.entries))

    @registry.register("toy_chars")
    def toy_chars(predictions, records):
        return [{"toy_chars": float(len(p))} for p in predictions]

    return "toy_chars"


def test_a_new_metric_reaches_the_benchmark_the_report_and_the_seeds_summary(toy_metric, tmp_path):
    from kd import seeds
    from kd.evaluation.benchmark import evaluate
    from kd.report.results import paired_block

    records = [{"id": f"t-{i}", "article": f"Article {i}. It says {i}.", "highlights": f"It says {i}."}
               for i in range(6)]
    outputs = {"teacher": lambda r: f"It says {r['id']}.", "baseline": lambda r: "It.",
               "student": lambda r: f"It says {r['id']} too."}
    rows = {}
    for model, summarize in outputs.items():
        blocks, rows[model] = evaluate({"test": records},
                                       lambda recs, f=summarize: {"beam": [f(r) for r in recs]})
        metrics = blocks["test"]["beam"]
        # the benchmark: the split mean and its bootstrap interval
        assert metrics[toy_metric] == pytest.approx(sum(len(outputs[model](r)) for r in records) / 6)
        assert {f"{toy_metric}_low", f"{toy_metric}_high"} <= set(metrics)
        assert all(toy_metric in row for row in rows[model])
    # the report's paired intervals against the control
    paired = paired_block(rows["student"], rows["baseline"])
    assert paired[toy_metric]["mean_diff"] == pytest.approx(
        sum(len(outputs["student"](r)) - len("It.") for r in records) / 6)
    # the seeds summary: a spread per model and a column of its tables
    per_seed = {s: {m: [dict(r) for r in rows[m]] for m in rows} for s in (0, 1)}
    result = seeds.collect(per_seed, resamples=50)
    assert toy_metric in result["models"]["student"]["beam"]
    assert toy_metric in result["vs_baseline"]["student"]["beam"]
    assert toy_metric in seeds.markdown(result)
