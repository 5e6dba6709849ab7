"""Every bad input we know of, tried as a new user would, through the stage scripts: each ends in one
clear line naming the key, file or line, exit status 2, no traceback, and nothing written.

One parametrized test; a case is (stage, setup, needles). `setup(c)` writes what the case needs into
the test's tmp dir and returns the stage's arguments (the runner adds --out, --log-dir and the
stage's other outputs, all inside the tmp dir).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
import yaml
from conftest import ROOT

GOOD = json.dumps({"id": "a", "article": "An article. It has words.", "highlights": "A summary."})
RECORD_B = json.dumps({"id": "b", "article": "Another article.", "highlights": "Another summary."})
GOOD_TRAIN = json.dumps({"id": "a", "article": "A training article. It has words.", "highlights": "A summary."})
GOOD_VALIDATION = json.dumps({"id": "a", "article": "A validation article. It has words.", "highlights": "A summary."})
STUDENT = {"d_model": 16, "d_ff": 32, "d_kv": 8, "num_layers": 1, "num_decoder_layers": 1, "num_heads": 2,
           "epochs": 1, "lr": 0.01}
TRAIN = {"batch_size": 8, "device": "cpu"}


def vanilla(**logit) -> dict:
    """The vanilla recipe (logit KD from the cached teacher outputs), its logit settings replaced."""
    return {"teacher_input": "data/teacher_outputs", "targets": "data/tokenized", "label_weight": 0.1,
            "losses": {"logit": logit or {"weight": 0.9, "temperature": 1.0}}}


def attention(**settings) -> dict:
    """The attention recipe (live teacher); `settings` replace the attention loss's."""
    return {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0,
            "losses": {"attention": {"weight": 1.0, "layer_map": "uniform", "heads": "mean"} | settings}}


def save_tiny_teacher(path: Path, tokenizer_dir: Path) -> Path:
    """A trained teacher as train_teacher leaves it: config, weights and tokenizer (random weights)."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def teachers(tiny_data, tmp_path_factory):
    """A tiny teacher, and a copy whose model.safetensors stops half-way (an interrupted copy)."""
    root = tmp_path_factory.mktemp("teachers")
    good = save_tiny_teacher(root / "teacher", tiny_data / "tokenizer")
    truncated = Path(shutil.copytree(good, root / "truncated"))
    weights = truncated / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    return {"teacher": good, "truncated": truncated}


@dataclass
class Ctx:
    """What a case's setup can use: its own tmp dir, and the tiny data and teachers (built once, outside it)."""

    tmp: Path
    request: pytest.FixtureRequest

    def params(self, text: str | None = None, **sections) -> list[str]:
        path = self.tmp / "params.yaml"
        path.write_text(text if text is not None else yaml.safe_dump(sections))
        return ["--params", str(path)]

    def own_data(self, train=GOOD_TRAIN, validation=GOOD_VALIDATION, test=GOOD, **data) -> list[str]:
        """params with data.source jsonl over three files written here (str: text, bytes: raw bytes);
        by default one good record each, a different article in each (splits must be disjoint)."""
        own = self.tmp / "own"
        own.mkdir()
        files = {}
        for split, content in (("train", train), ("validation", validation), ("test", test)):
            files[split] = own / f"{split}.jsonl"
            if content is not None:
                write = files[split].write_bytes if isinstance(content, bytes) else files[split].write_text
                write(content)
        return self.params(data={"source": "jsonl", "jsonl": {s: str(p) for s, p in files.items()}} | data)

    def teacher(self, which: str = "teacher") -> str:
        return str(self.request.getfixturevalue("teachers")[which])

    def tokenized(self) -> list[str]:
        tiny = self.request.getfixturevalue("tiny_data")
        return ["--tokenizer", str(tiny / "tokenizer"), "--tokenized", str(tiny / "tokenized")]


def lines(*rows: str) -> str:
    return "".join(row + "\n" for row in rows)


def models(c: Ctx, *students) -> list[str]:
    """The distill stage with the tiny teacher and data, kd.students given."""
    return [*c.params(student=STUDENT, train=TRAIN, kd={"students": dict(students)}),
            "--teacher", c.teacher(), *c.tokenized()]


CASES = [
    # --- params.yaml: typos, ranges, types, syntax -----------------------------------------------------
    pytest.param("download", lambda c: c.params(data={"sorce": "jsonl"}), ["data.sorce", "unknown key"],
                 id="typo-data-key"),
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(train={"lr": 0.1})], ["train.lr"],
                 id="key-in-wrong-section"),
    pytest.param("download", lambda c: c.params(data={"max_train_samples": 0}), ["data.max_train_samples"],
                 id="range-max-samples"),
    pytest.param("benchmark", lambda c: [*c.params(benchmark={"num_beams": 0}), "--model", str(c.tmp / "m")],
                 ["benchmark.num_beams"], id="range-num-beams"),
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(student={"num_heads": "four"})],
                 ["student.num_heads"], id="type-num-heads"),
    pytest.param("teacher_outputs", lambda c: c.params(teacher_outputs={"top_k": "8"}), ["teacher_outputs.top_k"],
                 id="type-top-k"),
    pytest.param("download", lambda c: c.params("data:\n  source: [builtin\n"), ["params.yaml", "not valid YAML"],
                 id="broken-yaml"),
    pytest.param("download", lambda c: c.params(dataa={"source": "jsonl"}), ["unknown section", "dataa"],
                 id="unknown-section"),
    pytest.param("download", lambda c: ["--params", str(c.tmp / "nope.yaml")], ["nope.yaml", "params file not found"],
                 id="missing-params-file"),
    # --- data -------------------------------------------------------------------------------------------
    pytest.param("download", lambda c: c.params(data={"source": "s3"}), ["data.source"], id="unknown-source"),
    pytest.param("download", lambda c: c.own_data(train=lines(GOOD, '{"id": "b", "article": ')),
                 ["train.jsonl:2: malformed JSON"], id="malformed-json-line"),
    pytest.param("download", lambda c: c.own_data(train="\n  \n"), ["train.jsonl: no records (empty split)"],
                 id="empty-split"),
    pytest.param("download", lambda c: c.own_data(validation=(GOOD + "\n").encode() + b'{"id": "\xff"}\n'),
                 ["validation.jsonl:2: not UTF-8"], id="not-utf8"),
    pytest.param("download", lambda c: c.own_data(train=lines('{"id": "a", "highlights": "y"}')),
                 ["train.jsonl:1: record missing 'article'"], id="record-missing-article"),
    pytest.param("download", lambda c: c.own_data(train=lines('{"id": "a", "article": "x"}')),
                 ["train.jsonl:1: record missing 'highlights'"], id="record-missing-highlights"),
    pytest.param("download", lambda c: c.own_data(test=None), ["test.jsonl: data file not found"],
                 id="missing-jsonl-file"),
    pytest.param("download", lambda c: c.own_data(test=lines(GOOD, RECORD_B, GOOD)),
                 ["test.jsonl:3: duplicate id 'a' (first on line 1)"], id="duplicate-ids"),
    pytest.param("download", lambda c: c.params(data={"source": "hub"}),
                 ["cannot reach the Hugging Face hub to download abisee/cnn_dailymail"], id="offline-hub"),
    # --- models and caches ------------------------------------------------------------------------------
    pytest.param("distill", lambda c: ["--student", "vanilla", *models(c, ("vanilla", vanilla())),
                                       "--teacher-outputs", str(c.tmp / "no_cache_here")],
                 ["no_cache_here"], id="missing-teacher-outputs-cache"),
    pytest.param("teacher_outputs", lambda c: [*c.params(teacher_outputs={"device": "cpu"}),
                                               "--teacher", c.teacher("truncated"), *c.tokenized()],
                 ["truncated/model.safetensors", "truncated or corrupt"], id="truncated-safetensors"),
    pytest.param("benchmark", lambda c: [*c.own_data(), "--test", str(c.tmp / "own" / "test.jsonl"),
                                         "--model", str(c.tmp / "missing")],
                 ["missing"], id="missing-model-dir"),
    pytest.param("benchmark", lambda c: [*c.own_data(), "--test", str(c.tmp / "own" / "test.jsonl"),
                                         "--model", c.teacher("truncated")],
                 ["truncated/model.safetensors", "truncated or corrupt"], id="benchmark-truncated-safetensors"),
    # --- distillation recipes (kd.students.<name>) -----------------------------------------------------
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(kd={"students": {"vanilla": {
        **vanilla(), "losses": {"logits": {"weight": 0.9}}}}})],
                 ["kd.students.vanilla.losses.logits", "unknown loss"], id="recipe-unknown-loss"),
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(kd={"students": {
        "vanilla": vanilla(weight=0.9, temperature=0)}})],
                 ["kd.students.vanilla.losses.logit.temperature"], id="recipe-temperature-zero"),
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(kd={"students": {
        "vanilla": vanilla(weight=0.9, temprature=2)}})],
                 ["kd.students.vanilla.losses.logit.temprature"], id="recipe-typo-in-loss-setting"),
    pytest.param("distill", lambda c: ["--student", "vanilla", *c.params(kd={"students": {
        "vanilla": vanilla() | {"label_weight": -1}}})],
                 ["kd.students.vanilla.label_weight"], id="recipe-negative-label-weight"),
    pytest.param("distill", lambda c: ["--student", "huge", *c.params(kd={"students": {"vanilla": vanilla()}})],
                 ["unknown student", "huge"], id="recipe-unknown-student"),
    pytest.param("distill", lambda c: ["--student", "teacher", *c.params(kd={"students": {
        "teacher": {"teacher_input": "models/teacher", "targets": "data/tokenized", "label_weight": 1.0, "losses": {}}}})],
                 ["kd.students.teacher", "reserved"], id="recipe-reserved-student-name"),
    pytest.param("distill", lambda c: ["--student", "attention", *c.params(kd={"students": {
        "attention": attention(heads="median")}})],
                 ["kd.students.attention.losses.attention.heads"], id="recipe-unknown-heads-mode"),
    # checked when the models are built: they need the teacher's and the student's configs
    pytest.param("distill", lambda c: ["--student", "attention", *models(c, ("attention", attention(
        layer_map="explicit", encoder_map=[[0, 9]], decoder=False, cross=False)))],
                 ["kd.students.attention.losses.attention.encoder_map"], id="recipe-layer-map-out-of-range"),
    pytest.param("distill", lambda c: ["--student", "attention", *c.params(
        student=STUDENT | {"num_heads": 4, "d_kv": 4}, train=TRAIN,
        kd={"students": {"attention": attention(heads="group")}}), "--teacher", c.teacher(), *c.tokenized()],
                 ["kd.students.attention.losses.attention.heads", "divisible"], id="recipe-heads-group-mismatch"),
]


def run_stage(name: str, args: list[str], tmp: Path) -> subprocess.CompletedProcess:
    outputs = ["--out", str(tmp / "out"), "--log-dir", str(tmp / "logs")]
    if name == "distill":
        outputs += ["--checkpoints", str(tmp / "ckpt"), "--live-dir", str(tmp / "live")]
    if name == "benchmark":
        outputs += ["--name", "x", "--examples", str(tmp / "examples.jsonl")]
        if "--test" in args:  # the same small split stands for validation
            outputs += ["--validation", args[args.index("--test") + 1]]
    # The hub case must fail fast and the same way everywhere: nothing listens on port 9.
    env = dict(os.environ, HF_HUB_OFFLINE="0", HF_DATASETS_OFFLINE="0", HF_ENDPOINT="http://127.0.0.1:9")
    return subprocess.run([sys.executable, "-m", f"stages.{name}", *args, *outputs], cwd=tmp,
                          env=env, capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("stage,setup,needles", CASES)
def test_bad_input_fails_cleanly(stage, setup, needles, tmp_path, request):
    args = setup(Ctx(tmp_path, request))
    before = set(tmp_path.rglob("*"))
    out = run_stage(stage, args, tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    error = [line for line in out.stderr.splitlines() if "error: " in line]
    assert len(error) == 1, out.stderr[-3000:]  # one clear line ...
    for needle in needles:
        assert needle in error[0], out.stderr[-3000:]  # ... naming the key, file or line
    written = {p for p in set(tmp_path.rglob("*")) - before if tmp_path / "logs" not in (p, *p.parents)}
    assert not written, sorted(map(str, written))
    assert not (tmp_path / "out").exists()


# --- the same errors one level down, where the stages get them ------------------------------------------


def test_load_model_names_a_truncated_weights_file(teachers):
    from kd.errors import ConfigError
    from kd.models.modeling import load_model

    weights = teachers["truncated"] / "model.safetensors"
    with pytest.raises(ConfigError) as e:
        load_model(teachers["truncated"])
    assert str(e.value).startswith(f"cannot load a seq2seq model from '{teachers['truncated']}': {weights} is "
                                   "truncated or corrupt (")
    assert "\n" not in str(e.value)


def test_load_model_names_a_missing_directory(tmp_path):
    from kd.errors import ConfigError
    from kd.models.modeling import load_model

    with pytest.raises(ConfigError, match=f"^cannot load a seq2seq model from '{tmp_path}/nope': no such directory$"):
        load_model(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="cannot load a seq2seq model from .*empty"):
        load_model(tmp_path / "empty")
