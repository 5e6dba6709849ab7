"""Tests for the synthetic corpus and the split loaders (local JSON lines, the real CNN/DM sample, the hub)."""

import gzip
import json
import os
import re
import time
from pathlib import Path

import pytest

from kd.data import builtin
from kd.data.sources import SPLITS, load_hub, read_jsonl, validate_records, write_jsonl_atomic
from kd.errors import ConfigError

CNNDM_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cnn_dailymail"
CNNDM_COUNTS = {"train": 99, "validation": 100, "test": 446}
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def sentences(text: str) -> list[str]:
    return re.split(r"(?<=[.!?\"])\s+(?=[A-Z\"0-9$])", text)


# --- builtin generator ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def corpus() -> list[dict]:
    return builtin.generate("train", 300, seed=7)


def test_generate_is_deterministic_per_seed():
    assert builtin.generate("train", 20, seed=1) == builtin.generate("train", 20, seed=1)
    assert builtin.generate("train", 20, seed=1) != builtin.generate("train", 20, seed=2)


def test_splits_differ_and_share_no_ids():
    by_split = {split: builtin.generate(split, 50, seed=0) for split in SPLITS}
    ids = [r["id"] for records in by_split.values() for r in records]
    assert len(ids) == len(set(ids)) == 150
    articles = [r["article"] for records in by_split.values() for r in records]
    assert len(set(articles)) == len(articles)


def test_generate_sizes_and_fields(corpus):
    assert builtin.generate("test", 0, seed=0) == []
    assert len(corpus) == 300
    validate_records(corpus, where="builtin")
    assert all(set(r) == {"id", "article", "highlights", "facts"} for r in corpus)
    words = [len(r["article"].split()) for r in corpus]
    assert 110 <= sum(words) / len(words) <= 220
    # a headline of 1-3 sentences, then one for each included detail that has one (up to 2)
    assert {r["highlights"].count("\n") + 1 for r in corpus} == {1, 2, 3, 4, 5}


def test_highlights_are_not_the_lead(corpus):
    for r in corpus:
        lead = sentences(r["article"])[:3]
        for sentence in r["highlights"].split("\n"):
            assert sentence not in lead


def capitalised_runs(sentence: str) -> list[tuple[int, list[str]]]:
    """Runs of capitalised words ("Tidewater Fisheries", "Wendy Kim"), with the index of their first word."""
    runs = []
    for i, word in enumerate(sentence.rstrip(".").split()):
        if word[0].isupper():
            if runs and runs[-1][0] + len(runs[-1][1]) == i:
                runs[-1][1].append(word.strip(","))
            else:
                runs.append((i, [word.strip(",")]))
    return runs


def test_highlight_entities_appear_early_in_article(corpus):
    for r in corpus:
        # The key facts sit in the first 7 sentences (an opener, 3 facts, up to 3 others between them), so an
        # input truncated to a few hundred tokens still holds every fact the highlights state.
        head = " ".join(sentences(r["article"])[:7])
        for sentence in r["highlights"].split("\n")[:1]:  # the headline's first line (details may come later)
            for start, run in capitalised_runs(sentence):
                # a sentence's first word is capitalised anyway: "Court in Seoul ...", "Wendy Kim beats ..."
                candidates = [" ".join(run)] if start else [" ".join(run), " ".join(run[1:])]
                assert any(c and c in head for c in candidates) or (start == 0 and len(run) == 1), (run, r)
            for number in NUMBER.findall(sentence):
                assert number in head, (number, r)


def test_distractor_count_follows_n_distractors():
    def mean_sentences(n_distractors: int) -> float:
        records = builtin.generate("train", 100, 0, n_distractors=n_distractors)
        return sum(len(sentences(r["article"])) for r in records) / len(records)

    assert 5 <= mean_sentences(0) + 2 <= mean_sentences(3) <= mean_sentences(6) - 2


def test_highlight_slots_are_stated_by_every_paraphrase_of_some_fact():
    for kind in builtin.EVENT_KINDS:
        always_stated = [set.intersection(*map(builtin.template_slots, fact)) for fact in kind.facts]
        for summary in kind.highlights:
            for template in summary:
                for slot in builtin.template_slots(template):
                    assert any(slot in stated for stated in always_stated), (kind.name, slot)


@pytest.mark.parametrize("kwargs", [
    dict(split="", n=1, seed=0), dict(split="train", n=-1, seed=0), dict(split="train", n=1, seed="0"),
    dict(split="train", n=1, seed=0, n_distractors=-2),
])
def test_generate_rejects_bad_arguments(kwargs):
    with pytest.raises(ConfigError):
        builtin.generate(**kwargs)


# --- read_jsonl ----------------------------------------------------------------------------------------


def write_lines(path: Path, lines: list[str]) -> Path:
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return path


GOOD = json.dumps({"id": "a", "article": "Some text.", "highlights": "A summary."})


def test_read_jsonl_skips_blank_lines_and_defaults_ids(tmp_path):
    path = write_lines(tmp_path / "dev.jsonl", [GOOD, "", json.dumps({"article": "x", "highlights": "y"}), "  "])
    assert read_jsonl(path) == [{"id": "a", "article": "Some text.", "highlights": "A summary."},
                                {"id": "dev-3", "article": "x", "highlights": "y"}]


@pytest.mark.parametrize("line, message", [
    ('{"article": "x", "highlights": ', "bad.jsonl:2: malformed JSON"),
    ('["x", "y"]', "bad.jsonl:2: expected a JSON object, got list"),
    ('{"highlights": "y"}', "bad.jsonl:2: record missing 'article'"),
    ('{"article": "x"}', "bad.jsonl:2: record missing 'highlights'"),
    ('{"article": "", "highlights": "y"}', "bad.jsonl:2: 'article' must be a non-empty string"),
    ('{"article": "x", "highlights": ["y"]}', "bad.jsonl:2: 'highlights' must be a non-empty string"),
    ('{"id": null, "article": "x", "highlights": "y"}', "bad.jsonl:2: 'id' must be a string or an integer"),
])
def test_read_jsonl_errors_name_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, line])
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_jsonl(path)


def test_read_jsonl_missing_and_empty_files(tmp_path):
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'nope.jsonl'}: data file not found")):
        read_jsonl(tmp_path / "nope.jsonl")
    with pytest.raises(ConfigError, match=re.escape("empty.jsonl: no records (empty split)")):
        read_jsonl(write_lines(tmp_path / "empty.jsonl", ["", " "]))
    (tmp_path / "broken.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(ConfigError, match="broken.jsonl.gz: cannot read"):
        read_jsonl(tmp_path / "broken.jsonl.gz")


@pytest.mark.parametrize("rows, message", [
    ([GOOD, json.dumps({"id": "b", "article": "x", "highlights": "y"}), GOOD],
     "dup.jsonl:3: duplicate id 'a' (first on line 1)"),
    # ids are strings: 7 and "7" are the same id
    (['{"id": 7, "article": "x", "highlights": "y"}', "", '{"id": "7", "article": "x", "highlights": "y"}'],
     "dup.jsonl:3: duplicate id '7' (first on line 1)"),
    # a default id ("<stem>-<line>") taken by another record's own id
    ([json.dumps({"article": "x", "highlights": "y"}), json.dumps({"id": "dup-1", "article": "x", "highlights": "y"})],
     "dup.jsonl:2: duplicate id 'dup-1' (first on line 1)"),
])
def test_read_jsonl_refuses_duplicate_ids_naming_both_lines(tmp_path, rows, message):
    with pytest.raises(ConfigError, match=re.escape(message)):
        read_jsonl(write_lines(tmp_path / "dup.jsonl", rows))


def test_read_jsonl_names_the_line_with_bytes_that_are_not_utf8(tmp_path):
    path = tmp_path / "latin1.jsonl"
    path.write_bytes((GOOD + "\n").encode() + '{"id": "b", "article": "Café", "highlights": "y"}\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=re.escape("latin1.jsonl:2: not UTF-8 text (byte 0xe9 at column 28)")):
        read_jsonl(path)


def test_read_jsonl_skips_a_byte_order_mark(tmp_path):
    path = tmp_path / "bom.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + (GOOD + "\r\n").encode())
    assert read_jsonl(path) == [{"id": "a", "article": "Some text.", "highlights": "A summary."}]


def test_read_jsonl_gz_with_field_mapping(tmp_path):
    path = tmp_path / "xsum.jsonl.gz"
    rows = [{"doc_id": 17, "document": "Long text.", "summary": "Short."}, {"document": "More.", "summary": "S."}]
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    records = read_jsonl(path, article_field="document", summary_field="summary", id_field="doc_id")
    assert records == [{"id": "17", "article": "Long text.", "highlights": "Short."},
                       {"id": "xsum-2", "article": "More.", "highlights": "S."}]
    with pytest.raises(ConfigError, match=re.escape("xsum.jsonl.gz:1: record missing 'article'")):
        read_jsonl(path)


def test_validate_records_names_where_and_field():
    with pytest.raises(ConfigError, match="builtin: no records"):
        validate_records([], where="builtin")
    with pytest.raises(ConfigError, match="hub: record 1: 'highlights' must be a non-empty string"):
        validate_records([{"id": "a", "article": "x", "highlights": "y"}, {"id": "b", "article": "x",
                                                                           "highlights": " "}], where="hub")


def test_validate_records_refuses_duplicate_ids():
    records = [{"id": i, "article": "x", "highlights": "y"} for i in ("a", "b", "a")]
    with pytest.raises(ConfigError, match=re.escape("hub: record 2: duplicate id 'a' (first as record 0)")):
        validate_records(records, where="hub")


def test_every_source_passes_the_duplicate_id_check(monkeypatch):
    """load_splits validates what any loader returns, so a source cannot hand over an id twice."""
    from kd.data import prepare, registry
    from kd.params import DataParams

    twice = [{"id": "x", "article": "An article.", "highlights": "A summary."}] * 2
    monkeypatch.setitem(registry.SOURCES.entries, "builtin", lambda split, data: twice)
    with pytest.raises(ConfigError, match=re.escape("data.source=builtin split 'train': record 1: duplicate id 'x'")):
        list(prepare.load_splits(DataParams())["train"])


def test_builtin_splits_pass_load_splits():
    from kd.data.prepare import load_splits
    from kd.params import BuiltinData, DataParams

    splits = load_splits(DataParams(builtin=BuiltinData(train_size=40, validation_size=5, test_size=5)))
    assert {s: len(list(r)) for s, r in splits.items()} == {"train": 40, "validation": 5, "test": 5}


@pytest.mark.parametrize("name", ["out.jsonl", "out.jsonl.gz"])
def test_write_jsonl_atomic_round_trip(tmp_path, name):
    records = builtin.generate("validation", 5, seed=3)
    path = tmp_path / "sub" / name
    write_jsonl_atomic(records, path)
    first = path.read_bytes()
    write_jsonl_atomic(records, path)
    assert path.read_bytes() == first  # same records, same bytes (gzip without a timestamp)
    assert read_jsonl(path) == records
    assert sorted(p.name for p in path.parent.iterdir()) == [name]  # no temp file left behind


# --- the real CNN/DailyMail sample ---------------------------------------------------------------------


@pytest.mark.parametrize("split", SPLITS)
def test_cnndm_sample(split):
    path = CNNDM_DIR / f"{split}.jsonl"
    if not path.is_file():
        pytest.skip(f"no CNN/DailyMail sample at {path}")
    records = read_jsonl(path)
    assert len(records) == CNNDM_COUNTS[split]
    assert len({r["id"] for r in records}) == len(records)
    assert all(r["id"].startswith("cnndm-") for r in records)
    assert all(len(r["article"].split()) > len(r["highlights"].split()) for r in records)


# --- the hub -------------------------------------------------------------------------------------------


def test_load_hub_offline_is_a_config_error(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    import huggingface_hub.constants

    # Offline mode is read from the environment when the libraries are imported, so patch both.
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    calls = []
    real_load = datasets.load_dataset
    monkeypatch.setattr(datasets, "load_dataset", lambda *a, **k: calls.append(a) or real_load(*a, **k))
    with pytest.raises(ConfigError, match="cannot reach the Hugging Face hub to download abisee/cnn_dailymail"):
        load_hub("test", max_samples=2, cache_dir=tmp_path)  # an empty cache, so nothing can be found
    assert calls == [("abisee/cnn_dailymail", "3.0.0")]


def test_load_hub_unreachable_fails_fast(monkeypatch, tmp_path):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(datasets.config, "HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    with pytest.raises(ConfigError, match="cannot reach the Hugging Face hub.*data.source: jsonl"):
        load_hub("validation", cache_dir=tmp_path)
    assert time.monotonic() - start < 10


def test_load_hub_keeps_fields_and_caps_samples(tmp_path):
    """The real datasets.load_dataset path, on a local dataset directory instead of the hub."""
    pytest.importorskip("datasets")
    rows = [{"id": str(i), "article": f"Article {i}.", "highlights": f"Summary {i}.", "url": "x"} for i in range(5)]
    # The cache must not sit inside the dataset directory: datasets would take its arrow files
    # ("<name>-train.arrow", ...) for data files too.
    local, cache = tmp_path / "local", tmp_path / "cache"
    local.mkdir()
    for split in ("train", "validation", "test"):
        (local / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = list(load_hub("train", name=str(local), config=None, max_samples=2, cache_dir=cache))
    assert got == [{k: r[k] for k in ("id", "article", "highlights")} for r in rows[:2]]
    assert len(list(load_hub("test", name=str(local), config=None, max_samples=50, cache_dir=cache))) == 5


def test_load_hub_refuses_duplicate_ids(tmp_path):
    pytest.importorskip("datasets")
    local, cache = tmp_path / "local", tmp_path / "cache"
    local.mkdir()
    rows = [{"id": i, "article": "An article.", "highlights": "A summary."} for i in ("a", "b", "b")]
    for split in ("train", "validation", "test"):
        (local / f"{split}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(ConfigError, match=re.escape("split 'test': record 2: duplicate id 'b' (first as record 1)")):
        list(load_hub("test", name=str(local), config=None, cache_dir=cache))


@pytest.mark.parametrize("kwargs, key", [(dict(split="dev"), "split"),
                                         (dict(split="test", max_samples=0), "max_samples")])
def test_load_hub_rejects_bad_arguments(kwargs, key):
    with pytest.raises(ConfigError, match=key):
        load_hub(**kwargs)


def test_generate_does_not_depend_on_the_hash_seed():
    """Same data in every process: set iteration order (PYTHONHASHSEED) must not reach the RNG."""
    import os
    import subprocess
    import sys

    code = ("import hashlib, json; from kd.data.builtin import generate; "
            "print(hashlib.sha256(json.dumps(generate('train', 50, 0, entity_pool=15)).encode()).hexdigest())")
    root = Path(__file__).resolve().parents[1]
    digests = {subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True,
                              env=dict(os.environ, PYTHONHASHSEED=seed)).stdout for seed in ("1", "2", "3")}
    assert len(digests) == 1 and len(digests.pop().strip()) == 64


# --- the tokenizer trainer sees every text -------------------------------------------------------------

def test_trainer_inputs_keep_every_word_within_the_limit():
    from kd.data.tokenization import trainer_inputs

    short = ["A short article.", "Another one."]
    assert list(trainer_inputs(short)) == short  # texts that fit go in as they are (builtin: unchanged)
    long = ("One sentence here, with words. " * 40 + "\n" + "x" * 30 + " " + "word " * 900).strip()
    pieces = list(trainer_inputs([long], max_bytes=100))
    assert max(len(p.encode("utf-8")) for p in pieces) <= 100
    assert " ".join(pieces).split() == long.split()  # every word, in order
    assert list(trainer_inputs(["é" * 80], max_bytes=100)) == ["é" * 50, "é" * 30]  # never half a character


_SP_CHECK = """
import io, json, sys
import sentencepiece as spm
from kd.data.tokenization import trainer_inputs
articles = [json.loads(line)["article"] for line in open(sys.argv[1], encoding="utf-8")]
texts = articles if sys.argv[2] == "raw" else list(trainer_inputs(articles))
spm.SentencePieceTrainer.train(sentence_iterator=iter(texts), model_writer=io.BytesIO(), vocab_size=500,
                               hard_vocab_limit=False, num_threads=1, minloglevel=0)
"""


def test_every_real_article_reaches_the_tokenizer_trainer(tmp_path):
    """SentencePiece skips inputs over 4,192 bytes (its log says so only at a verbose level): on the
    real CNN/DailyMail sample that is 108 of 446 test articles, the longest. Through trainer_inputs,
    none is skipped (the trainer's own log, read from a subprocess)."""
    import subprocess
    import sys

    from conftest import ROOT, SHARED_CNNDM

    path = SHARED_CNNDM / "test.jsonl"
    if not path.is_file():
        pytest.skip("../shared/data/cnn_dailymail is not here")
    script = tmp_path / "sp.py"
    script.write_text(_SP_CHECK)
    logs = {mode: subprocess.run([sys.executable, str(script), str(path), mode], cwd=ROOT, capture_output=True,
                                 text=True, env={**os.environ, "PYTHONPATH": str(ROOT)}).stderr
            for mode in ("raw", "split")}
    assert "Skipped 108 too long sentences" in logs["raw"]
    assert "Loaded all" in logs["split"] and "too long" not in logs["split"]


def test_a_new_source_is_one_registered_function(monkeypatch):
    """A source registered by name is what `data.source` selects; an unknown name fails naming the key
    and the known sources, before anything is read."""
    from kd.data import prepare, registry
    from kd.params import DataParams

    registry.available()  # the shipped sources register first, into the registry the test then copies
    monkeypatch.setattr(registry.SOURCES, "entries", dict(registry.SOURCES.entries))

    @registry.register("toy")
    def toy(split, data):
        return [{"id": f"{split}-{i}", "article": f"Article {split} {i}.", "highlights": "A summary."}
                for i in range(3)]

    splits = prepare.load_splits(DataParams(source="toy"))
    assert {name: [r["id"] for r in records] for name, records in splits.items()} == {
        s: [f"{s}-{i}" for i in range(3)] for s in ("train", "validation", "test")}
    assert {"builtin", "jsonl", "hub", "toy"} <= set(registry.available())
    with pytest.raises(ConfigError, match=r"data.source: unknown data source 'ftp'; known: \['builtin', 'hub', 'jsonl'"):
        prepare.load_splits(DataParams(source="ftp"))
