"""Tokenizers and tokenized splits.

Models built from config get a SentencePiece tokenizer (BPE or unigram) trained on the training
split and wrapped as a transformers `T5Tokenizer` (so `AutoTokenizer.from_pretrained` loads it); pretrained
models bring their own tokenizer.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import re
from collections import deque
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Mapping

import datasets
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from kd.data.sources import POOLS, SPLITS, iter_articles, iter_records
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.paths import raw_split

log = logging.getLogger(__name__)

# SentencePiece's trainer silently skips every input longer than this many bytes (its default
# `max_sentence_length`): 108 of the 446 articles of the real CNN/DailyMail test sample, the longest ones.
MAX_TRAINER_BYTES = 4192
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def trainer_inputs(texts: Iterable[str], max_bytes: int = MAX_TRAINER_BYTES) -> Iterator[str]:
    """The texts as SentencePiece trainer inputs, none longer than `max_bytes`, every word kept: a text
    that fits is passed as it is (so a corpus of short texts, such as the builtin one, trains on its
    texts unchanged); a longer one goes line by line, a line that is still too long sentence by
    sentence, and a sentence that is still too long in runs of whole words."""
    for text in texts:
        if len(text.encode("utf-8")) <= max_bytes:
            yield text
            continue
        for line in text.splitlines():
            for sentence in ([line] if len(line.encode("utf-8")) <= max_bytes else _SENTENCE_END.split(line)):
                yield from _word_runs(sentence, max_bytes)


def _word_runs(text: str, max_bytes: int) -> Iterator[str]:
    """`text` in runs of whole words of at most `max_bytes` each (a longer single word is cut)."""
    run: list[str] = []
    size = 0
    for word in text.split():
        n = len(word.encode("utf-8"))
        while n > max_bytes:  # a "word" longer than the limit (a URL run, say): cut it
            yield word.encode("utf-8")[:max_bytes].decode("utf-8", "ignore")
            word = word.encode("utf-8")[max_bytes:].decode("utf-8", "ignore")
            n = len(word.encode("utf-8"))
        if run and size + 1 + n > max_bytes:
            yield " ".join(run)
            run, size = [], 0
        size += n + (1 if run else 0)
        run.append(word)
    if run:
        yield " ".join(run)


# The seed of SentencePiece's input sampling (see train_sentencepiece), fixed so reruns are identical.
SAMPLE_SEED = 0


class _Feed:
    """An iterator for SentencePiece's trainer that keeps the exception it raised: the trainer turns it into
    a RuntimeError ("INTERNAL: ..."), and a bad record must still fail as the ConfigError naming its line."""

    def __init__(self, items: Iterable[str]):
        self._items = iter(items)
        self.error: BaseException | None = None
        self.count = 0

    def __iter__(self):
        return self

    def __next__(self) -> str:
        try:
            item = next(self._items)
            self.count += 1
            return item
        except StopIteration:
            raise
        except BaseException as e:
            self.error = e
            raise


def train_sentencepiece(texts: Iterable[str], vocab_size: int, model_type: str = "bpe", *,
                        sample_size: int = 0, split_digits: bool = False) -> T5Tokenizer:
    """Train a SentencePiece model in memory and wrap it as a T5 tokenizer (T5's special-token layout).

    Every text is read once, as it comes (long ones in pieces, see `trainer_inputs`); when there are more
    than `sample_size` trainer inputs (0: no limit), the trainer learns from a uniform sample of that many
    (its reservoir sampling, seeded with SAMPLE_SEED), which keeps its memory and time bounded at any
    corpus size. With no more inputs than `sample_size` it trains on all of them, in order, as without it.

    T5Tokenizer segments with a unigram model. A `unigram`-trained vocabulary is used as is. For
    `bpe` the learned pieces get scores -(1 + rank/V), all in (-2, -1]: one piece always beats two,
    so Viterbi segmentation takes the longest known pieces, close to what the BPE merges produce.
    BPE is the default because on small, repetitive corpora (such as the builtin one) unigram
    training stops near 1,250 pieces and splits common words ("buy" -> "bu" + "y"), which makes
    copying names and numbers much harder for a small model.

    `split_digits` keeps every digit a piece of its own, so no learned piece holds two digits and
    "81,000" is spelled "8" "1" "," "0" "0" "0" rather than being one or two rare pieces.
    """
    # SentencePiece's protobuf module needs the `protobuf` package; import here so only this path pays.
    from sentencepiece import sentencepiece_model_pb2

    buf = io.BytesIO()
    feed = _Feed(trainer_inputs(texts))  # every text reaches the trainer: long ones in pieces
    spm.set_random_generator_seed(SAMPLE_SEED)
    try:
        _train(feed, buf, vocab_size=vocab_size, model_type=model_type, sample_size=sample_size,
               split_digits=split_digits)
    except RuntimeError:
        if feed.error is not None:
            raise feed.error from None
        raise
    log.info("SentencePiece read %d inputs and learned from %d of them", feed.count,
             min(feed.count, sample_size or feed.count))
    proto = sentencepiece_model_pb2.ModelProto()
    proto.ParseFromString(buf.getvalue())
    vocab = [(p.piece, p.score) for p in proto.pieces]
    if model_type == "bpe":
        n = len(vocab)
        vocab = [(piece, score if i < 3 else -(1.0 + i / n)) for i, (piece, score) in enumerate(vocab)]
    return T5Tokenizer(
        vocab=vocab,
        _spm_precompiled_charsmap=proto.normalizer_spec.precompiled_charsmap,
        extra_ids=0,
    )


def _train(sentences: Iterator[str], model_writer, *, vocab_size: int, model_type: str, sample_size: int,
           split_digits: bool) -> None:
    spm.SentencePieceTrainer.train(
        # Read as they come, never all held: the trainer keeps at most `sample_size` of them.
        sentence_iterator=sentences,
        model_writer=model_writer,
        vocab_size=vocab_size,
        model_type=model_type,
        input_sentence_size=sample_size,
        shuffle_input_sentence=True,  # a uniform sample of all inputs, not the first `sample_size`
        # T5's layout: <pad>=0 doubles as decoder start, </s>=1, <unk>=2, no BOS.
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0,
        # A small corpus may not support the requested size; take what it supports.
        hard_vocab_limit=False,
        split_digits=split_digits,
        # One thread keeps the learned vocabulary identical from run to run.
        num_threads=1,
        minloglevel=2,
    )


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a tokenizer from {path!r}: {e}") from None


# The columns of a tokenized split and their types: what `datasets` infers from a fast tokenizer's output
# (its Arrow writer stores input_ids as int32 and attention_mask as int8), fixed so that every batch and
# every split is written with the same schema.
FEATURES = datasets.Features({
    "id": datasets.Value("string"),
    "input_ids": datasets.List(datasets.Value("int32")),
    "attention_mask": datasets.List(datasets.Value("int8")),
    "labels": datasets.List(datasets.Value("int64")),
})
BATCH_SIZE = 1000  # records tokenized and written at a time (datasets' default writer batch size)


@dataclass(frozen=True)
class Encoder:
    """A batch of records {"id": [...], "article": [...], "highlights": [...]} -> the tokenized columns
    (id, input_ids, attention_mask, labels); padding happens per batch later. Picklable, for worker processes."""

    tokenizer: PreTrainedTokenizerBase
    prefix: str
    max_source_length: int
    max_target_length: int

    def __call__(self, batch: dict) -> dict:
        enc = self.tokenizer([self.prefix + a for a in batch["article"]], max_length=self.max_source_length,
                             truncation=True)
        if "highlights" not in batch:  # unlabeled articles: no labels (the teacher's summaries come later)
            labels = [[] for _ in batch["article"]]
        else:
            labels = self.tokenizer(text_target=batch["highlights"], max_length=self.max_target_length,
                                    truncation=True)["input_ids"]
        return {"id": batch["id"], "input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"],
                "labels": labels}


def tokenize_records(
    records: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prefix: str,
    max_source_length: int,
    max_target_length: int,
    num_proc: int = 1,
) -> datasets.Dataset:
    """Records -> an in-memory Dataset(id, input_ids, attention_mask, labels), for small sets of records
    (tests, benchmarks); the tokenize stage streams with `write_tokenized` instead."""
    encode = Encoder(tokenizer, prefix, max_source_length, max_target_length)
    # Only the text pairs and ids: other record fields (the builtin corpus' facts) are for scoring only.
    ds = datasets.Dataset.from_list([{k: r[k] for k in ("id", "article", "highlights")} for r in records])
    return ds.map(encode, batched=True, num_proc=num_proc if num_proc > 1 else None,
                  remove_columns=["article", "highlights"], features=FEATURES, desc="tokenize")


def _batches(records: Iterable[dict], size: int) -> Iterator[dict]:
    """Records -> {"id": [...], "article": [...], "highlights": [...]} batches of up to `size` records."""
    it = iter(records)
    while chunk := list(itertools.islice(it, size)):
        yield {k: [r[k] for r in chunk] for k in ("id", "article", "highlights") if k in chunk[0]}


_worker_encode: Encoder | None = None


def _init_worker(encode: Encoder) -> None:
    global _worker_encode
    _worker_encode = encode


def _encode_in_worker(batch: dict) -> dict:
    return _worker_encode(batch)


def _encoded(batches: Iterator[dict], encode: Encoder, num_proc: int) -> Iterator[dict]:
    """The encoded batches, in order: in this process, or in `num_proc` worker processes with at most
    2 * num_proc batches in flight, so memory stays bounded however fast the records are read."""
    if num_proc <= 1:
        yield from map(encode, batches)
        return
    # The platform's default start method (fork on Linux, as datasets' map uses): spawned workers would
    # each import transformers and torch again. The parent has not encoded anything, so the fast
    # tokenizer's thread pool has not started and the fork is safe.
    with ProcessPoolExecutor(num_proc, initializer=_init_worker, initargs=(encode,)) as pool:
        pending: deque = deque()
        for batch in batches:
            pending.append(pool.submit(_encode_in_worker, batch))
            if len(pending) >= 2 * num_proc:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def write_tokenized(splits: Mapping[str, Iterable[dict]], out_dir: Path, encode: Encoder, *,
                    num_proc: int = 1, batch_size: int = BATCH_SIZE) -> dict[str, int]:
    """Tokenizes each split's records, a batch at a time as they are read, into a DatasetDict directory
    that `datasets.load_from_disk` loads (the layout `DatasetDict.save_to_disk` writes, one Arrow file
    per split). Nothing is held but the batches in flight, and nothing goes through the datasets cache.
    `out_dir` must be new and empty (the stage writes into `atomic_dir`'s temp dir). Returns the record
    counts per split."""
    counts = {}
    for split, records in splits.items():
        counts[split] = _write_split(_encoded(_batches(records, batch_size), encode, num_proc), Path(out_dir) / split)
    (Path(out_dir) / "dataset_dict.json").write_text(json.dumps({"splits": list(splits)}), encoding="utf-8")
    return counts


def _write_split(batches: Iterable[dict], split_dir: Path) -> int:
    """One split's encoded batches -> `split_dir` with the files `Dataset.save_to_disk` writes: the Arrow
    data, state.json and dataset_info.json."""
    from datasets.arrow_writer import ArrowWriter

    split_dir.mkdir(parents=True)
    data_file = split_dir / "data-00000-of-00001.arrow"
    writer = ArrowWriter(features=FEATURES, path=str(data_file))
    try:
        for batch in batches:
            writer.write_batch(batch)
        n, _ = writer.finalize()
    finally:
        writer.close()
    state = {"_data_files": [{"filename": data_file.name}],
             # From the content, so the same tokens give the same directory (DVC hashes it).
             "_fingerprint": _file_digest(data_file)[:16],
             "_format_columns": None, "_format_kwargs": {}, "_format_type": None,
             "_output_all_columns": False, "_split": None}
    (split_dir / "state.json").write_text(json.dumps(state, indent=2, sort_keys=True), encoding="utf-8")
    datasets.DatasetInfo(features=FEATURES).write_to_directory(str(split_dir))
    return n


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def _trainer_texts(paths: Iterable[Path], prefix: str) -> Iterator[str]:
    """The labelled training texts for the tokenizer trainer (the students' and the teacher's pools: the
    tokenizer is the teacher's), read and checked record by record: each article (with the task
    prefix, as the model sees it) and its summary."""
    for path in paths:
        for record in iter_records(path):
            yield prefix + record["article"]
            yield record["highlights"]


def _raw_files(raw_dir: Path) -> dict[str, Path]:
    """The raw split files to tokenize: every split, and each pool the download stage wrote."""
    raw = {s: raw_split(s, raw_dir) for s in SPLITS}
    return raw | {p: raw_split(p, raw_dir) for p in POOLS if raw_split(p, raw_dir).is_file()}


def _read(split: str, path: Path) -> Iterator[dict]:
    return iter_articles(path) if split == "unlabeled" else iter_records(path)


def prepare_tokenized(*, raw_dir, tokenizer_out, tokenized_out, params, pretrained: str | None) -> dict:
    """The tokenize stage's worker: tokenizer (trained or the teacher's) + tokenized splits on disk.

    Every split streams from its JSONL file (each record checked as it is read) through the tokenizer into
    its Arrow file, so memory stays bounded at any split size; outputs appear only once all is written."""
    raw = _raw_files(Path(raw_dir))
    if pretrained:
        tokenizer = load_tokenizer(pretrained)
    else:
        labelled = [raw[s] for s in ("train", "teacher_train") if s in raw]
        tokenizer = train_sentencepiece(_trainer_texts(labelled, params.prefix), params.vocab_size,
                                        params.model_type, sample_size=params.trainer_sample_size,
                                        split_digits=params.split_digits)
    encode = Encoder(tokenizer, params.prefix, params.max_source_length, params.max_target_length)
    with atomic_dir(tokenized_out) as tmp:
        counts = write_tokenized({s: _read(s, path) for s, path in raw.items()}, tmp, encode,
                                 num_proc=params.num_proc)
        # The tokenizer is written only once every split has passed (a bad record leaves both outputs as
        # they were); a crash between the two renames leaves a new tokenized dir beside the old tokenizer.
        with atomic_dir(tokenizer_out) as tok_tmp:
            tokenizer.save_pretrained(tok_tmp)
    return counts | {"vocab_size": len(tokenizer)}
