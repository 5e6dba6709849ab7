"""`python -m kd.summarize` end to end: a tiny saved T5, JSON lines and text input, stdout and --out, the same
summaries as kd.models.generation.generate_batch with the same settings; bad input ends in one line, exit 2."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml
from conftest import ROOT

BENCH = {"num_beams": 2, "max_new_tokens": 8, "batch_size": 3, "device": "cpu"}
TOKENIZER = {"prefix": "summarize: ", "max_source_length": 48}
N_ARTICLES = 5  # two batches of 3: progress is shown


def summarize(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "kd.summarize", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True)


@pytest.fixture(scope="module")
def setup(tiny_data, tmp_path_factory):
    """A model directory (tiny T5 + the tiny tokenizer, as the training stages save them), a params file,
    and a few articles."""
    from transformers import AutoTokenizer, T5Config, T5ForConditionalGeneration

    from kd.data.builtin import generate

    root = tmp_path_factory.mktemp("summarize")
    tok = AutoTokenizer.from_pretrained(tiny_data / "tokenizer")
    torch.manual_seed(0)
    cfg = T5Config(vocab_size=len(tok), d_model=32, d_kv=16, d_ff=64, num_layers=2, num_decoder_layers=2,
                   num_heads=2, dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    T5ForConditionalGeneration(cfg).save_pretrained(root / "model")
    tok.save_pretrained(root / "model")
    params = root / "params.yaml"
    params.write_text(yaml.safe_dump({"benchmark": BENCH, "tokenizer": TOKENIZER}))
    articles = [r["article"] for r in generate("test", N_ARTICLES, 0)]
    return root, params, articles


_expected: dict = {}


def expected(model_dir, articles, *, num_beams, max_new_tokens):
    """What generate_batch gives directly, in the benchmark's batches."""
    from kd.models.generation import batches, generate_batch
    from kd.models.modeling import load_model
    from kd.data.tokenization import load_tokenizer

    key = (str(model_dir), tuple(articles), num_beams, max_new_tokens)
    if key not in _expected:
        model, tok = load_model(model_dir).eval(), load_tokenizer(str(model_dir))
        with torch.inference_mode():
            _expected[key] = [s for batch in batches(articles, BENCH["batch_size"])
                              for s in generate_batch(model, tok, batch, prefix=TOKENIZER["prefix"],
                                                      max_source_length=TOKENIZER["max_source_length"],
                                                      num_beams=num_beams, max_new_tokens=max_new_tokens)]
    return _expected[key]


@pytest.mark.parametrize("kind,to,overrides", [
    ("jsonl", "stdout", {}),
    ("jsonl", "out", {"num_beams": 1, "max_new_tokens": 5}),
    ("text", "stdout", {"num_beams": 1, "max_new_tokens": 5}),
    ("text", "out", {}),
])
def test_summaries_match_generate_batch(setup, tmp_path, kind, to, overrides):
    root, params, articles = setup
    args = ["--model", root / "model", "--params", params]
    args += [a for k, v in overrides.items() for a in (f"--{k.replace('_', '-')}", v)]
    if kind == "jsonl":
        # the article under another name; ids kept when present, else the line number
        rows = [{"text": a} | ({"id": f"doc{i}"} if i != 1 else {}) for i, a in enumerate(articles)]
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
        args += ["--article-field", "text"]
    else:
        src = tmp_path / "in.txt"
        src.write_text("\n".join(articles[:2] + [""] + articles[2:]) + "\n")  # a blank line stays blank
    args.append(src)
    if to == "out":
        args += ["--out", tmp_path / "sub" / "summaries"]
    out = summarize(args, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert f"{N_ARTICLES}/{N_ARTICLES}" in out.stderr  # progress for inputs longer than one batch
    text = out.stdout if to == "stdout" else (tmp_path / "sub" / "summaries").read_text()
    if to == "out":
        assert out.stdout == ""
        assert sorted(p.name for p in (tmp_path / "sub").iterdir()) == ["summaries"]  # no temp file left
    want = expected(root / "model", articles, num_beams=overrides.get("num_beams", BENCH["num_beams"]),
                    max_new_tokens=overrides.get("max_new_tokens", BENCH["max_new_tokens"]))
    assert any(want)  # a random model still says something, so the comparison means something
    if kind == "jsonl":
        ids = [f"doc{i}" if i != 1 else "2" for i in range(N_ARTICLES)]
        assert [json.loads(line) for line in text.splitlines()] == [
            {"id": i, "summary": s} for i, s in zip(ids, want)]
    else:
        assert text.split("\n") == want[:2] + [""] + want[2:] + [""]


def _jsonl(*rows):
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows)


GOOD = {"id": "a", "article": "Some article text."}


@pytest.mark.parametrize("name,content,extra,needles", [
    ("in.jsonl", _jsonl(GOOD), ["--model", "{tmp}/no-model"], ["no-model", "no trained model here"]),
    ("in.jsonl", "\n \n", [], ["in.jsonl: no articles (empty input)"]),
    ("in.txt", "", [], ["in.txt: no articles (empty input)"]),
    ("in.jsonl", _jsonl(GOOD, '{"id": "b", "article": '), [], ["in.jsonl:2: malformed JSON"]),
    ("in.jsonl", _jsonl({"id": "a", "body": "x"}), [], ["in.jsonl:1: record missing 'article'", "--article-field"]),
    ("in.jsonl", _jsonl(GOOD), ["--article-field", "text"], ["in.jsonl:1: record missing 'text'"]),
    ("in.jsonl", _jsonl({"id": "a", "article": ""}), [], ["in.jsonl:1: 'article' must be a non-empty string"]),
    ("in.jsonl", _jsonl(GOOD, {"id": "b", "article": "x"}, GOOD), [],
     ["in.jsonl:3: duplicate id 'a' (first on line 1)"]),
    ("in.txt", b"An article.\nAnother \xff one.\n", [], ["in.txt:2: not UTF-8"]),
    ("missing.txt", None, [], ["missing.txt: input file not found"]),
    ("in.txt", "An article.\n", ["--params", "{tmp}/nope.yaml"], ["nope.yaml: params file not found"]),
])
def test_bad_input_is_one_line_and_writes_nothing(setup, tmp_path, name, content, extra, needles):
    root, params, _ = setup
    if isinstance(content, bytes):
        (tmp_path / name).write_bytes(content)
    elif content is not None:
        (tmp_path / name).write_text(content)
    extra = [a.format(tmp=tmp_path) for a in extra]
    args = ["--model", root / "model", "--params", params, *extra, tmp_path / name, "--out", tmp_path / "out.jsonl"]
    out = summarize(args, tmp_path)
    assert out.returncode == 2, out.stderr[-3000:]
    assert "Traceback" not in out.stderr and out.stdout == ""
    assert [line for line in out.stderr.splitlines() if line.strip()][-1].startswith("error: ")
    for needle in needles:
        assert needle in out.stderr, out.stderr
    assert not (tmp_path / "out.jsonl").exists()


def test_truncated_model_weights(setup, tmp_path):
    import shutil

    root, params, _ = setup
    shutil.copytree(root / "model", tmp_path / "model")
    weights = tmp_path / "model" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    (tmp_path / "in.txt").write_text("An article.\n")
    out = summarize(["--model", tmp_path / "model", "--params", params, tmp_path / "in.txt"], tmp_path)
    assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr[-3000:]
    assert f"error: cannot load a seq2seq model from '{tmp_path / 'model'}': {weights} is truncated" in out.stderr
    assert out.stdout == ""


def test_read_articles_text_keeps_lines_and_blank_lines(tmp_path):
    from kd.summarize import read_articles

    (tmp_path / "a.txt").write_bytes("\ufeffFirst one.\r\n\r\nSecond\u2028still second.\n".encode())
    got = read_articles(tmp_path / "a.txt")
    assert got.texts == ["First one.", "", "Second\u2028still second."]
    assert got.ids is None and got.blank == {1}


def test_int8_and_threads_serve_the_quantized_model(setup, tmp_path):
    """--int8 --threads 1: summaries from the int8-quantized model (what load_summarizer(int8=True) decodes),
    the stderr line says so."""
    from kd.models.generation import generate_all, load_summarizer

    root, params, articles = setup
    src = tmp_path / "in.txt"
    src.write_text("\n".join(articles) + "\n")
    out = summarize(["--model", root / "model", "--params", params, "--num-beams", "1", "--max-new-tokens", "5",
                     "--int8", "--threads", "1", src], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "in int8" in out.stderr
    model, tok = load_summarizer(root / "model", int8=True)
    want = generate_all(model, tok, articles, batch_size=BENCH["batch_size"], prefix=TOKENIZER["prefix"],
                        max_source_length=TOKENIZER["max_source_length"], num_beams=1, max_new_tokens=5)
    assert out.stdout.split("\n")[:-1] == [" ".join(s.split()) for s in want]
    bad = summarize(["--model", root / "model", "--params", params, "--threads", "0", src], tmp_path)
    assert bad.returncode == 2 and "--threads" in bad.stderr
