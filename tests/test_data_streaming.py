"""The download and tokenize stages stream: memory stays bounded at any split size, the outputs are those of
the in-memory path they replaced, bad input leaves existing outputs untouched, and the tokenizer trainer
reads every text while it learns from a bounded sample."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, SHARED_CNNDM

from kd.data import builtin
from kd.data.prepare import load_splits, write_splits
from kd.data.sources import SPLITS, load_hub
from kd.errors import ConfigError
from kd.params import BuiltinData, DataParams, JsonlData, TokenizerParams
from kd.paths import raw_split
from tools.peakrss import measured

SIZES = {"train": 40, "validation": 6, "test": 5}


def jsonl_bytes(records) -> bytes:
    """What the download stage wrote before it streamed: one json.dumps per record."""
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")


def write_rows(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


# --- download: same bytes as the in-memory path ---------------------------------------------------------


def test_download_writes_the_bytes_of_the_in_memory_path(tmp_path):
    data = DataParams(builtin=BuiltinData(**{f"{s}_size": n for s, n in SIZES.items()}, entity_pool=15))
    assert write_splits(load_splits(data), tmp_path) == SIZES
    for split, n in SIZES.items():
        expected = builtin.generate(split, n, data.seed, n_distractors=data.builtin.n_distractors, entity_pool=15)
        assert raw_split(split, tmp_path).read_bytes() == jsonl_bytes(expected)


def test_download_jsonl_and_hub_sources_stream_the_same_records(tmp_path):
    """Field mapping, default ids, facts and caps through the jsonl source; the hub source on a local
    dataset directory (read in batches, no to_list) gives the rows' three fields in the same order."""
    rows = [{"doc": f"Article {i} ü.", "sum": f"Summary {i}.", "key": f"k{i}", "url": "x"} for i in range(7)]
    src = tmp_path / "src"
    for split in SPLITS:  # the same ids in every split, but not the same articles (those are refused)
        write_rows(src / f"{split}.jsonl", [{**r, "doc": f"{split} {r['doc']}"} for r in rows])
    data = DataParams(source="jsonl", max_test_samples=3, jsonl=JsonlData(
        **{s: str(src / f"{s}.jsonl") for s in SPLITS}, article_field="doc", summary_field="sum", id_field="key"))
    assert write_splits(load_splits(data), tmp_path / "out") == {"train": 7, "validation": 7, "test": 3}
    expected = [{"id": r["key"], "article": f"train {r['doc']}", "highlights": r["sum"]} for r in rows]
    assert raw_split("train", tmp_path / "out").read_bytes() == jsonl_bytes(expected)
    assert raw_split("test", tmp_path / "out").read_bytes() == jsonl_bytes(
        [{**e, "article": e["article"].replace("train", "test")} for e in expected[:3]])

    hub_rows = [{"url": "x", "highlights": f"S {i}.", "id": str(i), "article": f"A {i}."} for i in range(2500)]
    for split in SPLITS:
        write_rows(tmp_path / "hub" / f"{split}.jsonl", hub_rows)
    got = load_hub("train", name=str(tmp_path / "hub"), config=None, cache_dir=tmp_path / "cache")
    assert not isinstance(got, list)
    import datasets

    old = datasets.load_dataset(str(tmp_path / "hub"), split="train", cache_dir=tmp_path / "cache")
    assert jsonl_bytes(got) == jsonl_bytes(old.select_columns(["id", "article", "highlights"]).to_list())


# --- bad input in the last split ------------------------------------------------------------------------


def test_bad_last_record_of_the_last_split_leaves_the_raw_files_untouched(tmp_path):
    good = [{"id": f"r{i}", "article": f"Text {i}.", "highlights": f"S {i}."} for i in range(5)]
    src = tmp_path / "src"
    for split in SPLITS:
        write_rows(src / f"{split}.jsonl", [{**r, "article": f"{split} {r['article']}"} for r in good])
    out = tmp_path / "raw"
    data = DataParams(source="jsonl", jsonl=JsonlData(**{s: str(src / f"{s}.jsonl") for s in SPLITS}))
    write_splits(load_splits(data), out)
    before = tree(out)
    write_rows(src / "train.jsonl", good[:2])  # a changed train split, written to its temp file first ...
    write_rows(src / "test.jsonl", [{**r, "article": f"test {r['article']}"} for r in good]
               + [{"id": "r9", "article": "Text.", "highlights": ""}])  # ... then this
    with pytest.raises(ConfigError, match=r"test\.jsonl:6: 'highlights' must be a non-empty string"):
        write_splits(load_splits(data), out)
    assert tree(out) == before  # no split replaced, no temp file left
    with pytest.raises(ConfigError, match="data file not found"):
        write_splits(load_splits(DataParams(source="jsonl", jsonl=JsonlData(**{s: str(tmp_path / s) for s in SPLITS}))),
                     tmp_path / "new")
    assert not (tmp_path / "new").exists()


def _raw_dir(root: Path, splits: dict[str, list[dict]]) -> Path:
    for split, records in splits.items():
        write_rows(raw_split(split, root), records)
    return root


@pytest.mark.parametrize("bad_split", ["train", "test"])
def test_bad_record_leaves_the_tokenizer_and_tokenized_data_untouched(tmp_path, bad_split):
    """A bad record read while the tokenizer trains (train) or at the end of the last split (test) fails
    with the ConfigError naming its line, not the trainer's RuntimeError, and replaces no output."""
    from kd.data.tokenization import prepare_tokenized

    splits = {s: builtin.generate(s, n, 0) for s, n in SIZES.items()}
    raw = _raw_dir(tmp_path / "raw", splits)
    outs = dict(tokenizer_out=tmp_path / "tok", tokenized_out=tmp_path / "tokd")
    params = TokenizerParams(vocab_size=150, max_source_length=48, max_target_length=16)
    prepare_tokenized(raw_dir=raw, **outs, params=params, pretrained=None)
    before = {name: tree(path) for name, path in outs.items()}
    bad = [*builtin.generate("x", 3, 1), {"id": "z", "article": "", "highlights": "S."}]
    write_rows(raw_split(bad_split, raw), [*splits[bad_split], *bad])
    line = len(splits[bad_split]) + len(bad)
    with pytest.raises(ConfigError, match=rf"{bad_split}\.jsonl:{line}: 'article' must be a non-empty string"):
        prepare_tokenized(raw_dir=raw, **outs, params=params, pretrained=None)
    assert {name: tree(path) for name, path in outs.items()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["raw", "tok", "tokd"]  # no temp dir left


# --- tokenize: same token ids as the in-memory path -----------------------------------------------------


def _in_memory_tokenized(records, tokenizer, *, prefix, max_source_length, max_target_length):
    """The tokenize stage's code before it streamed (kd.data.tokenization.tokenize_records at 69956ab), verbatim."""
    import datasets

    def encode(batch):
        sources = [prefix + a for a in batch["article"]]
        enc = tokenizer(sources, max_length=max_source_length, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["highlights"], max_length=max_target_length,
                                  truncation=True)["input_ids"]
        return enc

    ds = datasets.Dataset.from_list([{k: r[k] for k in ("id", "article", "highlights")} for r in records])
    return ds.map(encode, batched=True, remove_columns=["article", "highlights"], desc="tokenize")


@pytest.mark.parametrize("num_proc", [1, 2])
def test_streamed_tokens_equal_the_in_memory_path(tmp_path, num_proc):
    import datasets

    from kd.data.tokenization import Encoder, tokenize_records, train_sentencepiece, write_tokenized

    splits = {s: builtin.generate(s, n, 3) for s, n in SIZES.items()}
    tok = train_sentencepiece((r["article"] for r in splits["train"]), 150)
    kwargs = dict(prefix="summarize: ", max_source_length=40, max_target_length=12)
    counts = write_tokenized({s: iter(r) for s, r in splits.items()}, tmp_path / "tokd",
                             Encoder(tok, **kwargs), num_proc=num_proc, batch_size=7)
    assert counts == SIZES
    streamed = datasets.load_from_disk(str(tmp_path / "tokd"))
    assert list(streamed) == list(SPLITS)
    for split, records in splits.items():
        old = _in_memory_tokenized(records, tok, **kwargs)
        assert streamed[split].features == old.features  # the column types training reads
        assert streamed[split].column_names == ["id", "input_ids", "attention_mask", "labels"]
        assert streamed[split].to_dict() == old.to_dict()
        assert tokenize_records(records, tok, **kwargs).to_dict() == old.to_dict()
    assert str(streamed["train"].features["input_ids"].feature.dtype) == "int32"


# --- the tokenizer trainer --------------------------------------------------------------------------------


def test_trainer_reads_every_real_article_and_learns_from_a_sample(tmp_path, monkeypatch):
    """Every text of the real sample (446 test articles, 108 of them over SentencePiece's 4,192-byte limit)
    reaches the trainer's input, in pieces that fit, although it keeps only a sample of 2,000 inputs."""
    import sentencepiece as spm

    from kd.data import tokenization

    path = SHARED_CNNDM / "test.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data/cnn_dailymail is not here")
    received: list[str] = []
    real_train = spm.SentencePieceTrainer.train

    def recording_train(*, sentence_iterator, **kwargs):
        assert kwargs["input_sentence_size"] == 2000 and kwargs["shuffle_input_sentence"]

        def tee():
            for sentence in sentence_iterator:
                received.append(sentence)
                yield sentence

        return real_train(sentence_iterator=tee(), **kwargs)

    monkeypatch.setattr(spm.SentencePieceTrainer, "train", recording_train)
    records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
    tok = tokenization.train_sentencepiece(tokenization._trainer_texts([path], "summarize: "), 300, sample_size=2000)
    assert len(tok) == 300
    texts = [t for r in records for t in ("summarize: " + r["article"], r["highlights"])]
    assert len(records) == 446 and len(received) > 2000  # more inputs than the sample: it did sample
    assert max(len(s.encode("utf-8")) for s in received) <= tokenization.MAX_TRAINER_BYTES
    assert " ".join(received).split() == " ".join(texts).split()  # every word of every article, in order


def test_trainer_sample_is_seeded_and_leaves_a_small_corpus_as_it_was():
    from kd.data.tokenization import train_sentencepiece

    texts = [t for r in builtin.generate("train", 300, 0) for t in (r["article"], r["highlights"])]

    def vocab(sample_size):
        return train_sentencepiece(iter(texts), 300, sample_size=sample_size).get_vocab()

    assert vocab(len(texts)) == vocab(0)  # no more inputs than the sample: all of them, as without one
    assert vocab(200) == vocab(200) != vocab(0)  # a smaller sample: used, and the same every run



def test_split_digits_spells_every_number_digit_by_digit(tmp_path):
    """tokenizer.split_digits reaches the trainer through the stage's worker: no piece of the saved tokenizer
    holds two digits, so a number is its digits; without it the builtin corpus' numbers are whole pieces."""
    import re

    from transformers import AutoTokenizer

    from kd.data.tokenization import prepare_tokenized

    raw = _raw_dir(tmp_path / "raw", {s: builtin.generate(s, n * 5, 0) for s, n in SIZES.items()})

    def tokenizer(split_digits: bool):
        out = tmp_path / f"split-{split_digits}"
        prepare_tokenized(raw_dir=raw, tokenizer_out=out / "tok", tokenized_out=out / "tokd", pretrained=None,
                          params=TokenizerParams(vocab_size=400, max_source_length=64, max_target_length=16,
                                                 split_digits=split_digits))
        return AutoTokenizer.from_pretrained(out / "tok")

    def multi_digit(tok):
        return [p for p in tok.get_vocab() if len(re.findall(r"\d", p)) > 1]

    split, whole = tokenizer(True), tokenizer(False)
    assert multi_digit(split) == [] and multi_digit(whole)
    assert [p.lstrip("\u2581") for p in split.tokenize("81,000") if p != "\u2581"] == ["8", "1", ",", "0", "0", "0"]
    assert split.decode(split("About 81,000 homes").input_ids, skip_special_tokens=True) == "About 81,000 homes"

# --- bounded memory ---------------------------------------------------------------------------------------


def _write_corpus(root: Path, sizes: dict[str, int], seed: int = 0) -> None:
    """Short articles of 20 words from 400 made-up ones (short keeps the tokenizing under ~15 s)."""
    rng = random.Random(seed)
    words = ["".join(rng.choices("abcdefghijklmnopqrstuvwxyz", k=rng.randint(3, 8))) for _ in range(400)]
    for split, n in sizes.items():
        write_rows(root / f"{split}.jsonl", ({"id": f"{split}-{i}", "article": " ".join(rng.choices(words, k=20)) + ".",
                                              "highlights": " ".join(rng.choices(words, k=5)) + "."}
                                             for i in range(n)))


def _peak_rss_mb(cmd: list[str], cwd: Path) -> float:
    """Peak RSS of `cmd`, from tools.peakrss's small launcher: started from this process, which holds torch,
    the child's figure would start at this process's."""
    env = {**os.environ, "TQDM_DISABLE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with open(cwd / "out.log", "w") as out:
        result = measured(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
    assert result["returncode"] == 0, (cwd / "out.log").read_text()[-3000:]
    return result["peak_rss_mb"]


def test_download_and_tokenize_of_50000_articles_stay_in_bounded_memory(tmp_path):
    """Both stages as subprocesses on a 50,000-article train split (20-word articles, 11 MB of JSONL), peak
    RSS measured with os.wait4 through tools.peakrss (MB, new / the in-memory code it replaced):

                  5,000 articles   50,000 articles
        download      20 / 22          29 / 51      (the ids seen, kept to find duplicates)
        tokenize     482 / 503        490 / 574     (~480 of it: importing transformers and torch)

    The bounds sit between the two paths' figures, with room for other library versions. About 30 s on a
    shared 2-core machine, nearly all of it the tokenizer's encode_batch."""
    src = tmp_path / "src"
    _write_corpus(src, {"train": 50_000, "validation": 500, "test": 500})
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump({
        "data": {"source": "jsonl", "jsonl": {s: str(src / f"{s}.jsonl") for s in SPLITS}},
        "tokenizer": {"vocab_size": 500, "max_source_length": 64, "max_target_length": 16,
                      "trainer_sample_size": 5000}}))
    common = ["--params", str(params), "--log-dir", str(tmp_path / "logs")]
    download = _peak_rss_mb([sys.executable, "-m", "stages.download", *common,
                             "--out", str(tmp_path / "raw")], tmp_path)
    tokenize = _peak_rss_mb([sys.executable, "-m", "stages.tokenize", *common, "--raw",
                             str(tmp_path / "raw"), "--tokenizer-out", str(tmp_path / "tok"),
                             "--tokenized-out", str(tmp_path / "tokd")], tmp_path)
    import datasets

    assert datasets.load_from_disk(str(tmp_path / "tokd")).num_rows == {"train": 50_000, "validation": 500,
                                                                           "test": 500}
    assert download < 40, download
    assert tokenize < 540, tokenize
