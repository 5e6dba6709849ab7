"""dvc.yaml agrees with the code: each stage's deps cover its script's import closure inside kd/, each
student's teacher-side dep is the one its recipe reads, and the paths on each `cmd` are the scripts'
defaults."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path

import pytest
import yaml
from conftest import ROOT

from kd import paths
from kd.losses.registry import loss_class
from kd.params import TEACHER_INPUTS, load_section


def dvc_yaml():
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())


# ----------------------------------------------------------------------------- import closure


def _module_file(name: str) -> Path | None:
    p = ROOT / Path(*name.split("."))
    if (p / "__init__.py").is_file():
        return p / "__init__.py"
    return p.with_suffix(".py") if p.with_suffix(".py").is_file() else None


def _kd_imports(path: Path) -> set[str]:
    """kd modules `path` imports anywhere in its body (function-level imports included)."""
    package = ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            found |= {base} | {f"{base}.{a.name}" for a in node.names}
    return {m for m in found if m == "kd" or m.startswith("kd.")}


def import_closure(script: Path) -> set[Path]:
    """Every file of kd/ that `script` imports, directly or not (parent packages' __init__ included). A
    package's `registry.py` imports its modules by name (losses, metrics, data sources), so reaching it
    brings in every module of its package."""
    seen, todo = set(), [script]
    while todo:
        f = todo.pop()
        if f in seen:
            continue
        seen.add(f)
        modules = set(_kd_imports(f))
        if f.name == "registry.py":
            modules |= {".".join(g.relative_to(ROOT).with_suffix("").parts) for g in f.parent.glob("*.py")}
        for module in modules:
            parts = module.split(".")
            for i in range(1, len(parts) + 1):
                g = _module_file(".".join(parts[:i]))
                if g is not None and g not in seen:
                    todo.append(g)
    return {f for f in seen if f != script}


def code_deps(script: Path) -> list[str]:
    """The code deps a stage running `script` declares: the script, then its import closure inside kd/,
    a package whose registry it reaches as one directory (so a new module there is a dep too)."""
    closure = import_closure(script)
    packages = sorted({f.parent for f in closure if f.name == "registry.py"})
    files = sorted(str(f.relative_to(ROOT)) for f in closure if f.parent not in packages)
    return [str(script.relative_to(ROOT)), *files, *(str(d.relative_to(ROOT)) for d in packages)]


def _stages():
    """(stage name, script, deps) for every stage that runs a script in stages/."""
    for name, stage in dvc_yaml()["stages"].items():
        body = stage.get("do", stage)
        m = re.search(r"-m stages\.(\w+)", body["cmd"])
        if m:
            yield name, ROOT / "stages" / f"{m[1]}.py", body.get("deps", [])


@pytest.mark.parametrize("name,script,deps", list(_stages()), ids=lambda v: v if isinstance(v, str) else "")
def test_stage_deps_cover_the_scripts_import_closure(name, script, deps):
    declared = [ROOT / d for d in deps if "${" not in d]
    assert script in declared, f"{name}: its script {script.relative_to(ROOT)} is not a dep"

    def covered(f: Path) -> bool:
        return any(f == d or d in f.parents for d in declared)

    missing = sorted(str(f.relative_to(ROOT)) for f in import_closure(script) if not covered(f))
    assert not missing, f"{name}: dvc.yaml deps miss {missing}"
    # and nothing more: a code dep the stage does not import would rerun it for nothing
    code = [d for d in deps if d.startswith(("kd/", "kd ", "stages/")) or d == "kd"]
    assert code == code_deps(script), f"{name}: code deps should be {code_deps(script)}"


def test_the_teachers_stages_do_not_import_the_losses_or_the_cache():
    for script in ("train_teacher", "teacher_outputs"):
        closure = {str(f.relative_to(ROOT)) for f in import_closure(ROOT / "stages" / f"{script}.py")}
        assert not {f for f in closure if f.startswith("kd/losses")}, script
        assert "kd/students/distill.py" not in closure and "kd/students/recipe.py" not in closure, script
    closure = {str(f.relative_to(ROOT)) for f in import_closure(ROOT / "stages" / "train_teacher.py")}
    assert "kd/teacher/cache.py" not in closure


def test_import_closure_sees_function_level_imports():
    closure = {str(f.relative_to(ROOT)) for f in import_closure(ROOT / "stages" / "distill.py")}
    assert {"kd/students/distill.py", "kd/students/recipe.py", "kd/losses/__init__.py", "kd/training/loop.py"} <= closure


# ----------------------------------------------------------------------------- students


def test_every_student_is_a_stage_whose_teacher_dep_is_what_its_recipe_reads():
    from kd.students.recipe import resolve

    kd = load_section("kd", ROOT / "params.yaml")
    spec, train = load_section("student", ROOT / "params.yaml"), load_section("train", ROOT / "params.yaml")
    stages = dvc_yaml()["stages"]
    assert stages["distill"]["foreach"] == "${kd.students}"
    do = stages["distill"]["do"]
    assert "${item.teacher_input}" in do["deps"] and str(paths.TEACHER_DIR) in do["deps"]
    assert set(do["params"]) >= {"student", "train", "kd.students.${key}", "kd.teacher_device"}
    for name in kd.students:
        recipe = resolve(name, kd, spec, train)  # also validates every recipe in the shipped params
        assert recipe.teacher_input in TEACHER_INPUTS
        if recipe.cached:  # only a recipe whose losses can all read the cache may depend on it
            assert recipe.losses and all(loss_class(n).reads_cache for n in recipe.losses), name
        else:
            assert recipe.teacher_input == str(paths.TEACHER_DIR), name
    # loss modules are imported by name (no import statement names them): the whole package is a dep
    assert "kd/losses" in do["deps"]
    assert f"--teacher-outputs {paths.TEACHER_OUTPUTS_DIR}" in do["cmd"]
    assert stages["benchmark"]["foreach"] == "${kd.students}"


def test_teacher_outputs_depends_on_teacher_and_data_only():
    stage = dvc_yaml()["stages"]["teacher_outputs"]
    assert stage["params"] == ["teacher_outputs", "train.threads"]  # no student or kd key can rerun it
    assert {str(paths.TEACHER_DIR), str(paths.TOKENIZED_DIR), str(paths.TOKENIZER_DIR)} <= set(stage["deps"])
    assert f"--out {paths.TEACHER_OUTPUTS_DIR}" in stage["cmd"]
    # the cache, and the stage's cost summary beside it (uncached: the report charges it to the recipes)
    assert [str(paths.TEACHER_OUTPUTS_DIR), {str(paths.stage_cost("teacher_outputs")): {"cache": False}}] == stage["outs"]


def test_training_stages_start_through_the_launch_param():
    stages = dvc_yaml()["stages"]
    assert stages["train_teacher"]["cmd"].startswith("${launch.train} -m stages.train_teacher")
    assert stages["distill"]["do"]["cmd"].startswith("${launch.train} -m stages.distill")
    assert stages["benchmark"]["do"]["cmd"].startswith("${launch.benchmark} -m stages.benchmark")
    assert stages["benchmark_teacher"]["cmd"].startswith("${launch.benchmark} -m stages.benchmark")


def test_cmd_paths_are_the_script_defaults():
    stages = dvc_yaml()["stages"]
    assert f"--out {paths.RAW_DIR}" in stages["download"]["cmd"]
    assert f"--tokenized-out {paths.TOKENIZED_DIR}" in stages["tokenize"]["cmd"]
    assert f"--out {paths.TEACHER_DIR}" in stages["train_teacher"]["cmd"]
    assert f"--out {paths.student_dir('${key}')}" in stages["distill"]["do"]["cmd"]


def test_training_stages_keep_their_metric_history_for_a_resume():
    """DVC deletes a stage's outputs before running it; the dvclive history of a training stage must
    survive, or a run resumed from its checkpoint would lose the steps before it."""
    stages = dvc_yaml()["stages"]
    for body in (stages["train_teacher"], stages["distill"]["do"]):
        live = [entry for kind in ("outs", "plots") for entry in body[kind]
                if isinstance(entry, dict) and next(iter(entry)).startswith("dvclive/")]
        assert len(live) == 2  # the summary (an output) and the history (plots)
        for entry in live:
            (path, opts), = entry.items()
            assert opts.get("persist") is True and opts.get("cache") is False, path


def test_the_declared_metrics_fit_a_terminal():
    """`dvc exp show` lists every key of every metrics file dvc.yaml declares: at most 40 in all, here
    benchmark_results/metrics.json (a few per model), whatever the stage's other outputs hold."""
    stages = dvc_yaml()["stages"]
    declared = [next(iter(e)) if isinstance(e, dict) else e
                for body in stages.values() for e in body.get("do", body).get("metrics", [])]
    assert declared == ["benchmark_results/metrics.json"]
    metrics = json.loads((ROOT / declared[0]).read_text())

    def keys(node):
        return sum(keys(v) for v in node.values()) if isinstance(node, dict) else 1

    assert 0 < keys(metrics) <= 40, keys(metrics)
    assert set(metrics) == {"teacher", "lead3", *yaml.safe_load((ROOT / "params.yaml").read_text())["kd"]["students"]}


def test_the_lock_holds_only_the_stages_dvc_yaml_defines():
    """A stage removed from dvc.yaml (or a student from params.yaml) leaves no entry behind in dvc.lock."""
    students = load_section("kd", ROOT / "params.yaml").students
    defined = set()
    for name, stage in dvc_yaml()["stages"].items():
        defined |= {f"{name}@{s}" for s in students} if "foreach" in stage else {name}
    locked = set(yaml.safe_load((ROOT / "dvc.lock").read_text())["stages"])
    assert locked <= defined, f"stale dvc.lock entries: {sorted(locked - defined)}"
