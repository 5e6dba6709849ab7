"""The user documentation says what is true of the repository: it speaks to users (no issue numbers,
commit hashes, dates of runs or development machines), every command it shows parses (modules exist
and take the flags shown, `dvc` subcommands and options are real, `dvc exp run -S` overrides validate
as params, new recipes as recipes), its links resolve, and docs/params.md documents exactly the keys
params.yaml has. History belongs in docs/tuning-log.md, which the guard leaves alone."""

from __future__ import annotations

import contextlib
import copy
import functools
import importlib.util
import io
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import ROOT

DOCS = ROOT / "docs"
README = ROOT / "README.md"
HISTORY = DOCS / "tuning-log.md"  # the one place for history: not guarded
USER_DOCS = [README, *sorted(p for p in DOCS.glob("*.md") if p != HISTORY)]
CONFIGS = [ROOT / "params.yaml", *sorted((ROOT / "kd" / "profiles").glob("*.yaml"))]
PROFILE_OF = {"real-job.md": "cnndm-t5-base-small"}  # pages whose commands run on a profile's params


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------------- (a) the guard

GUARD = {
    "an issue number": re.compile(r"\bissues?\s*#?\d+\b|(?<![\w&/#])#\d+\b", re.I),
    "a date": re.compile(r"\b(?:19|20)\d\d-[01]\d-[0-3]\d\b"),
    "a commit hash": re.compile(r"\b(?=[0-9a-f]*[a-f])(?=[0-9a-f]*\d)[0-9a-f]{7,40}\b"),
    "a sweep round": re.compile(r"\bsweep\s+r?\d+|\bround\s+\d+\b|\b(?:first|second|third|fourth|fifth|sixth)\s+"
                                r"(?:sweep\s+)?round\b|\br\d\d(?:-[a-z0-9]+)*\b", re.I),
    "the team's process": re.compile(r"\b(?:this|a|our|the)\s+sessions?\b|\bsessions\b|\bdevice tool\b", re.I),
    "a development machine": re.compile(r"\b(?:our|this)\s+(?:machines?|CPU|box|GPU)\b|\bXeon\b|\bEPYC\b", re.I),
}


def guard_findings(text: str) -> list[str]:
    return [f"line {n}: {what}: {m.group(0)!r}" for n, line in enumerate(text.splitlines(), 1)
            for what, pattern in GUARD.items() for m in pattern.finditer(line)]


def test_the_guard_catches_process_talk():
    for bad in ("changed for issue 12", "see #12", "on 2026-12-01", "fixed in 1b19579", "sweep r16",
                "the fifth sweep round", "(r16-v-t2)", "no device was lent to this session", "on our machine",
                "a 2-core Intel Xeon"):
        assert guard_findings(bad), bad
    for fine in ("top-64 logits, batch 32, 287,113 articles", "t5-v1_1-small", "cu128", "`1e-4`", "ROUGE-1 41.12",
                 "a shared cache for the team", "[Metrics](#metrics)", "sha256", "accelerate launch"):
        assert not guard_findings(fine), fine


@pytest.mark.parametrize("path", USER_DOCS + CONFIGS, ids=rel)
def test_user_documents_say_nothing_of_the_process(path):
    findings = guard_findings(path.read_text())
    assert not findings, f"{rel(path)} (history goes to docs/tuning-log.md):\n" + "\n".join(findings)


def test_readme_is_a_manual():
    assert len(README.read_text().splitlines()) <= 250


# ------------------------------------------------------------------------------------------- links

def slug(heading: str) -> str:
    """GitHub's anchor of a markdown heading."""
    text = re.sub(r"[`*_]|\[|\]\([^)]*\)", "", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.*)$", text, flags=re.M)}


@pytest.mark.parametrize("path", USER_DOCS, ids=rel)
def test_links_resolve(path):
    text = re.sub(r"```.*?```", "", path.read_text(), flags=re.S)
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", text):
        if re.match(r"[a-z]+://", target):
            continue
        file, _, anchor = target.partition("#")
        dest = (path.parent / file).resolve() if file else path
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(target)
    assert not broken, f"{rel(path)}: broken links {broken}"


# ------------------------------------------------------------------------------------------- (b) commands

def code_blocks(text: str):
    """(language, body) of every fenced block."""
    return re.findall(r"^```(\w*)[^\n]*\n(.*?)^```", text, flags=re.S | re.M)


def shell_commands(text: str) -> list[list[str]]:
    """The simple commands of every bash/sh/console block: comments dropped, continuation lines joined,
    split at && || ; |, redirections removed."""
    commands = []
    for lang, body in code_blocks(text):
        if lang not in ("bash", "sh", "shell", "console"):
            continue
        lines = body.splitlines()
        if lang == "console":
            lines = [line[2:] for line in lines if line.startswith("$ ")]
        script = re.sub(r"\\\n", " ", "\n".join(lines))
        for line in script.splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|<>")
            lexer.whitespace_split = True
            lexer.commenters = "#"
            command, skip = [], False
            for token in lexer:
                if skip:
                    skip = False
                elif token in ("&&", "||", ";", "|", "&"):
                    commands.append(command)
                    command = []
                elif token in (">", ">>", "<", "2>", "&>"):
                    skip = True
                else:
                    command.append(token)
            commands.append(command)
    return [c for c in commands if c]


def test_shell_commands_are_split_as_a_shell_would():
    text = ("```bash\npython3 -m venv .venv && . .venv/bin/activate   # a comment\n"
            "dvc exp run -S 'a.b=1 2' \\\n    -S x=2 > out.txt\n```\n"
            "```console\n$ dvc exp show\n Experiment  x\n```\n```yaml\nkey: value\n```\n")
    assert shell_commands(text) == [["python3", "-m", "venv", ".venv"], [".", ".venv/bin/activate"],
                                    ["dvc", "exp", "run", "-S", "a.b=1 2", "-S", "x=2"], ["dvc", "exp", "show"]]


def documented_commands():
    """(page, command) for every command of the user docs."""
    return [(path, command) for path in USER_DOCS for command in shell_commands(path.read_text())]


def python_modules():
    """{(module, subcommand or None): {pages}} of every `python -m <module> ...` shown, with the flags used."""
    found: dict[str, dict] = {}
    for path, command in documented_commands():
        if command[0] in ("python", "python3") and len(command) > 2 and command[1] == "-m":
            module, args = command[2], command[3:]
            entry = found.setdefault(module, {"pages": set(), "uses": []})
            entry["pages"].add(rel(path))
            entry["uses"].append(args)
    return found


PYTHON_MODULES = python_modules()
OWN = ("kd", "stages", "tools")


def test_the_docs_show_python_commands():
    assert {"kd.profile", "kd.seeds", "kd.summarize", "tools.bench", "tools.readme"} <= set(PYTHON_MODULES)


@pytest.mark.parametrize("module", sorted(PYTHON_MODULES))
def test_python_modules_exist(module):
    assert importlib.util.find_spec(module) is not None, \
        f"`python -m {module}` in {sorted(PYTHON_MODULES[module]['pages'])}: no such module"


@functools.lru_cache(maxsize=None)
def help_text(module: str, subcommand: str | None = None) -> str:
    argv = [sys.executable, "-m", module, *([subcommand] if subcommand else []), "--help"]
    out = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, f"{' '.join(argv[1:])} exits {out.returncode}: {out.stderr[-2000:]}"
    return out.stdout


@pytest.mark.parametrize("module", sorted(m for m in PYTHON_MODULES if m.split(".")[0] in OWN))
def test_python_commands_take_the_flags_shown(module):
    """`--help` exits 0, and every long flag a page passes is one the module (or its subcommand) lists."""
    top = help_text(module)
    subcommands = set()
    for choices in re.findall(r"\{([\w,-]+)\}", top.split("\n\n")[0]):
        subcommands |= set(choices.split(","))
    unknown = []
    for args in PYTHON_MODULES[module]["uses"]:
        sub = args[0] if args and args[0] in subcommands else None
        text = top + (help_text(module, sub) if sub else "")
        flags = {a.split("=")[0] for a in args if a.startswith("--")}
        unknown += [f"{' '.join(args)}: {flag}" for flag in sorted(flags) if not re.search(rf"{re.escape(flag)}\b", text)]
    assert not unknown, f"python -m {module}: flags its --help does not list: {unknown}"


def dvc_parser():
    from dvc.cli.parser import get_main_parser

    return get_main_parser()


DVC_COMMANDS = [(path, command) for path, command in documented_commands() if command[0] == "dvc"]


def test_the_docs_show_dvc_commands():
    shown = {tuple(c[1:3]) for _, c in DVC_COMMANDS}
    assert {("repro",), ("exp", "run"), ("exp", "show"), ("metrics", "diff"), ("plots", "diff"), ("push",),
            ("pull",), ("queue", "start"), ("exp", "push")} <= {s[:1] if s[0] in ("repro", "push", "pull") else s
                                                                for s in shown}


@pytest.mark.parametrize("path,command", DVC_COMMANDS, ids=lambda x: rel(x) if isinstance(x, Path) else " ".join(x)[:60])
def test_dvc_commands_parse(path, command):
    """Real subcommands with real options, as dvc's own argument parser reads them."""
    parser = dvc_parser()
    err = io.StringIO()
    try:
        with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
            parser.parse_args(command[1:])
    except (SystemExit, Exception) as e:  # dvc raises DvcParserError, argparse SystemExit
        pytest.fail(f"{rel(path)}: `{shlex.join(command)}` does not parse: {type(e).__name__} {err.getvalue()[-500:]}")


# --- dvc exp run -S: every override validates against the params it would change

def base_params(page: Path) -> dict:
    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    profile = PROFILE_OF.get(page.name)
    if profile:
        from kd.profile import PROFILES_DIR, merge

        merge(raw, yaml.safe_load((PROFILES_DIR / f"{profile}.yaml").read_text()))
    return raw


def validate(raw: dict, where: str) -> None:
    """Every section and every recipe of a params mapping, as the stages (and the profile) check them."""
    from kd.params import SECTIONS, section_from
    from kd.students import recipe as recipes

    sections = {name: section_from(raw, name) for name in SECTIONS}
    kd, outputs = sections["kd"], sections["teacher_outputs"]
    for name in kd.students:
        resolved = recipes.resolve(name, kd, sections["student"], sections["train"])
        for loss, settings in resolved.losses.items():
            temperature = getattr(settings, "temperature", None)
            assert not resolved.cached or temperature in outputs.temperatures, \
                f"{where}: kd.students.{name}.losses.{loss}.temperature is not in teacher_outputs.temperatures"
    check = getattr(recipes, "check_teacher_summaries", None)
    if check is not None:
        check(kd, sections["teacher_generate"])


def overrides(command: list[str]) -> list[str]:
    out = []
    for i, arg in enumerate(command):
        if arg in ("-S", "--set-param"):
            out.append(command[i + 1])
        elif arg.startswith("--set-param="):
            out.append(arg.split("=", 1)[1])
    return out


EXP_RUNS = [(path, command) for path, command in DVC_COMMANDS if command[1:3] == ["exp", "run"] and overrides(command)]


def test_the_real_job_shows_every_other_method_as_one_command():
    added = {}
    for path, command in EXP_RUNS:
        for value in overrides(command):
            if path.name == "real-job.md" and value.startswith("+kd.students."):
                recipe = yaml.safe_load(value.split("=", 1)[1])
                added.update({loss: recipe for loss in recipe["losses"]})
    assert set(added) >= {"logit", "feature", "attention", "gkd"}
    assert added["gkd"]["losses"]["gkd"]["max_new_tokens"] == 128
    for recipe in added.values():
        assert recipe["student"] == {"init": "pretrained", "pretrained": "t5-small"}


@pytest.mark.parametrize("path,command", EXP_RUNS, ids=lambda x: rel(x) if isinstance(x, Path) else " ".join(x)[:60])
def test_exp_run_overrides_validate(path, command):
    """Each -S parses as DVC reads it (Hydra's override grammar); a `+kd.students.<name>={...}` recipe is also a
    YAML flow mapping that resolves as a recipe; the params after the overrides validate, each value of a
    sweep in turn. Pages that follow a profile are checked against that profile's params."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from kd.errors import ConfigError

    parser = OverridesParser.create()
    where = f"{rel(path)}: `{shlex.join(command)[:120]}`"
    parsed = parser.parse_overrides(overrides(command))
    variants = [copy.deepcopy(base_params(path))]
    for text, override in zip(overrides(command), parsed):
        key = override.key_or_group
        *parents, leaf = key.split(".")
        if override.is_add():
            assert key.startswith("kd.students."), f"{where}: `+` adds only recipes here, got {key}"
            flow = yaml.safe_load(text.split("=", 1)[1])
            assert isinstance(flow, dict) and flow == override.value(), \
                f"{where}: the recipe is not the same YAML flow mapping DVC reads: {flow!r} vs {override.value()!r}"
        values = list(override.value().list) if override.is_sweep_override() else [override.value()]
        expanded = []
        for raw in variants:
            node = raw
            for part in parents:
                assert isinstance(node, dict) and part in node, f"{where}: {key}: no such key in params.yaml"
                node = node[part]
            if override.is_add():
                assert leaf not in node, f"{where}: +{key}: the key exists already (drop the +)"
            else:
                assert leaf in node, f"{where}: {key}: no such key in params.yaml (a new key needs +)"
            for value in values:
                variant = copy.deepcopy(raw)
                target = variant
                for part in parents:
                    target = target[part]
                target[leaf] = value
                expanded.append(variant)
        variants = expanded
    for raw in variants:
        try:
            validate(raw, where)
        except ConfigError as e:
            pytest.fail(f"{where}: {e}")


# ------------------------------------------------------------------------------------------- (c) params.md

PARAMS_DOC = DOCS / "params.md"


def documented_keys() -> dict[str, str]:
    """{dotted key: its table row} of docs/params.md: the backticked dotted keys of each row's first cell."""
    keys = {}
    for line in PARAMS_DOC.read_text().splitlines():
        if not line.startswith("| `"):
            continue
        first = line.split("|")[1]
        for key in re.findall(r"`([^`]+)`", first):
            keys[key] = line
    return keys


def params_keys() -> set[str]:
    """params.yaml flattened to dotted keys; recipes as `kd.students.<name>.<key>` for every key a recipe
    has, and each loss's settings as `kd.students.<name>.losses.<loss>.<setting>` for every loss there is."""
    import dataclasses

    from kd.losses.registry import available, loss_class
    from kd.params import StudentRecipe

    def flat(node, prefix=""):
        for key, value in node.items():
            dotted = f"{prefix}{key}"
            if dotted == "kd.students":
                yield dotted
            elif isinstance(value, dict) and value:
                yield from flat(value, dotted + ".")
            else:
                yield dotted

    raw = yaml.safe_load((ROOT / "params.yaml").read_text())
    keys = set(flat(raw))
    recipe = "kd.students.<name>"
    keys |= {f"{recipe}.{f.name}" for f in dataclasses.fields(StudentRecipe)}
    keys |= {f"{recipe}.losses.{loss}.{f.name}" for loss in available()
             for f in dataclasses.fields(loss_class(loss).Settings)}
    # what params.yaml's own recipes use must be among those
    used = {f"{recipe}.{k}" for r in raw["kd"]["students"].values() for k in r}
    used |= {f"{recipe}.losses.{loss}.{s}" for r in raw["kd"]["students"].values()
             for loss, settings in (r.get("losses") or {}).items() for s in (settings or {})}
    assert used <= keys, sorted(used - keys)
    return keys


def test_params_doc_documents_exactly_the_keys_params_yaml_has():
    documented, actual = set(documented_keys()), params_keys()
    missing, extra = sorted(actual - documented), sorted(documented - actual)
    assert not missing and not extra, (f"docs/params.md lacks {missing}" if missing else "") + \
        (f"; documents keys params.yaml does not have: {extra}" if extra else "")


def direct_stages(key: str) -> set[str]:
    """The dvc.yaml stages whose `params:` name `key`, a section above it, or a key below it."""
    stages = yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]
    found = set()
    for name, stage in stages.items():
        listed = stage.get("params") or (stage.get("do") or {}).get("params") or []
        for entry in listed:
            entry = str(entry).replace("${key}", "<name>")
            if key == entry or key.startswith(entry + ".") or entry.startswith(key + "."):
                found.add(name)
        cmd = str(stage.get("cmd") or (stage.get("do") or {}).get("cmd") or "")
        if "${" + key + "}" in cmd:  # launch.*: interpolated into the command
            found.add(name)
    return found


def test_params_doc_names_the_stages_each_key_reruns():
    """The reruns cell of each section key names every stage dvc.yaml lists for it (foreach stages as
    `distill@` / `benchmark@`)."""
    wrong = []
    for key, row in documented_keys().items():
        if key.startswith("kd.students."):
            continue  # recipes and losses: one sentence above their tables
        cell = row.rstrip().rstrip("|").rsplit("|", 1)[1]
        for stage in direct_stages(key):
            shown = f"`{stage}@" if stage in ("distill", "benchmark") else f"`{stage}"
            if shown not in cell and not (key == "kd.students" and "below" in cell):
                wrong.append(f"{key}: {stage}")
    assert not wrong, f"docs/params.md: reruns cells miss stages dvc.yaml lists: {wrong}"
