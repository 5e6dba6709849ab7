"""The pools beside the splits: the teacher's own labelled articles and articles without references,
from every source (builtin sizes, jsonl files, the hub's training articles after the students'), tokenized
like the splits, and disjoint from each other and from validation and test (refused with a count)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kd.data import builtin
from kd.data.prepare import load_splits, write_splits
from kd.errors import ConfigError
from kd.params import BuiltinData, DataParams, HubData, JsonlData
from kd.paths import raw_split


def write_rows(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def read(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_builtin_pools_have_their_sizes_and_unlabeled_articles_no_reference(tmp_path):
    data = DataParams(builtin=BuiltinData(train_size=6, validation_size=3, test_size=3, teacher_train_size=10,
                                          unlabeled_size=4))
    counts = write_splits(load_splits(data), tmp_path)
    assert counts == {"train": 6, "validation": 3, "test": 3, "teacher_train": 10, "unlabeled": 4}
    teacher = read(raw_split("teacher_train", tmp_path))
    assert teacher == builtin.generate("teacher_train", 10, 0, n_distractors=3)  # a split of its own seed
    unlabeled = read(raw_split("unlabeled", tmp_path))
    assert [set(r) for r in unlabeled] == [{"id", "article"}] * 4
    assert [r["article"] for r in unlabeled] == [r["article"] for r in builtin.generate("unlabeled", 4, 0, n_distractors=3)]
    # without pools, a rerun leaves no stale pool file behind
    write_splits(load_splits(DataParams(builtin=BuiltinData(train_size=6, validation_size=3, test_size=3))), tmp_path)
    assert not raw_split("teacher_train", tmp_path).exists() and not raw_split("unlabeled", tmp_path).exists()


def _jsonl_data(tmp_path: Path, **pools) -> DataParams:
    for split in ("train", "validation", "test"):
        write_rows(tmp_path / f"{split}.jsonl", [{"id": f"{split}{i}", "article": f"{split} article {i}.",
                                                  "highlights": "S."} for i in range(3)])
    return DataParams(source="jsonl", jsonl=JsonlData(**{s: str(tmp_path / f"{s}.jsonl")
                                                         for s in ("train", "validation", "test")}, **pools))


def test_jsonl_pools_read_their_files(tmp_path):
    write_rows(tmp_path / "mine.jsonl", [{"key": "u1", "text": "An article nobody summarized.", "extra": 1}])
    write_rows(tmp_path / "teacher.jsonl", [{"key": "t1", "text": "A labelled article.", "sum": "It."}])
    data = _jsonl_data(tmp_path, unlabeled=str(tmp_path / "mine.jsonl"), teacher_train=str(tmp_path / "teacher.jsonl"))
    data = DataParams(source="jsonl", jsonl=JsonlData(**{**data.jsonl.__dict__, "article_field": "text",
                                                          "summary_field": "sum", "id_field": "key"}))
    for split in ("train", "validation", "test"):  # the same files with the renamed fields
        write_rows(tmp_path / f"{split}.jsonl", [{"key": f"{split}{i}", "text": f"{split} article {i}.", "sum": "S."}
                                                 for i in range(3)])
    write_splits(load_splits(data), tmp_path / "raw")
    assert read(raw_split("unlabeled", tmp_path / "raw")) == [{"id": "u1", "article": "An article nobody summarized."}]
    assert read(raw_split("teacher_train", tmp_path / "raw")) == [{"id": "t1", "article": "A labelled article.",
                                                                    "highlights": "It."}]


def test_an_article_in_two_pools_is_refused_with_the_count_before_anything_is_written(tmp_path):
    # the same text as two test articles, re-spaced and re-cased: normalized, they are the same
    write_rows(tmp_path / "mine.jsonl", [{"id": "u1", "article": "TEST   article 0."}, {"id": "u2", "article": "Test article 1."},
                                         {"id": "u3", "article": "Something new."}])
    data = _jsonl_data(tmp_path, unlabeled=str(tmp_path / "mine.jsonl"))
    out = tmp_path / "raw"
    with pytest.raises(ConfigError, match=r"2 article\(s\) of split 'unlabeled' are also in 'test' .*id 'u1' = 'test0'"):
        write_splits(load_splits(data), out)
    assert not out.exists()  # nothing written, not even the splits read before the overlap
    write_rows(tmp_path / "validation.jsonl", [{"id": "v", "article": "train article 2.", "highlights": "S."}])
    with pytest.raises(ConfigError, match=r"1 article\(s\) of split 'validation' are also in 'train'"):
        write_splits(load_splits(_jsonl_data_keep(tmp_path)), out)


def _jsonl_data_keep(tmp_path: Path) -> DataParams:
    return DataParams(source="jsonl", jsonl=JsonlData(**{s: str(tmp_path / f"{s}.jsonl")
                                                         for s in ("train", "validation", "test")}))


def test_hub_pools_are_the_training_articles_after_the_students(tmp_path):
    """The real loader on a local dataset directory: the students' labelled set is the first
    max_train_samples training rows, the teacher's pool the next ones, the unlabeled pool the next."""
    rows = [{"id": str(i), "article": f"Article number {i}.", "highlights": f"S {i}."} for i in range(20)]
    for split in ("train", "validation", "test"):
        write_rows(tmp_path / "hub" / f"{split}.jsonl",
                   rows if split == "train" else [{**r, "article": f"{split} {r['article']}"} for r in rows[:2]])
    data = DataParams(source="hub", max_train_samples=5,
                      hub=HubData(name=str(tmp_path / "hub"), config=None, cache_dir=str(tmp_path / "cache"),
                                  teacher_train_samples=8, unlabeled_samples=4))
    counts = write_splits(load_splits(data), tmp_path / "raw")
    assert counts == {"train": 5, "validation": 2, "test": 2, "teacher_train": 8, "unlabeled": 4}
    assert [r["id"] for r in read(raw_split("teacher_train", tmp_path / "raw"))] == [str(i) for i in range(5, 13)]
    assert read(raw_split("unlabeled", tmp_path / "raw")) == [{"id": str(i), "article": f"Article number {i}."}
                                                              for i in range(13, 17)]
    with pytest.raises(ConfigError, match=r"data\.max_train_samples must be set"):
        DataParams(source="hub", hub=HubData(unlabeled_samples=4))


def test_unlabeled_articles_are_tokenized_without_labels_and_the_tokenizer_learns_from_both_labelled_pools(tmp_path):
    from datasets import load_from_disk

    from kd.params import TokenizerParams
    from kd.data.tokenization import prepare_tokenized

    data = DataParams(builtin=BuiltinData(train_size=20, validation_size=4, test_size=4, teacher_train_size=30,
                                          unlabeled_size=6))
    write_splits(load_splits(data), tmp_path / "raw")
    prepare_tokenized(raw_dir=tmp_path / "raw", tokenizer_out=tmp_path / "tok", tokenized_out=tmp_path / "ds",
                      params=TokenizerParams(vocab_size=300, trainer_sample_size=0), pretrained=None)
    ds = load_from_disk(str(tmp_path / "ds"))
    assert set(ds) == {"train", "validation", "test", "teacher_train", "unlabeled"}
    assert len(ds["teacher_train"]) == 30 and all(ds["teacher_train"]["labels"])
    assert len(ds["unlabeled"]) == 6 and ds["unlabeled"]["labels"] == [[]] * 6 and all(ds["unlabeled"]["input_ids"])
