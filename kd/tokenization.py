"""Tokenizers and tokenized splits.

Models built from config get a SentencePiece tokenizer (BPE or unigram) trained on the training
split and wrapped as a transformers `T5Tokenizer` (so `AutoTokenizer.from_pretrained` loads it); pretrained
models bring their own tokenizer.
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Iterable, Iterator

import datasets
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from kd.data.sources import SPLITS, read_jsonl
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.paths import raw_split


# SentencePiece's trainer silently skips every input longer than this many bytes (its default
# `max_sentence_length`): 108 of the 446 articles of the real CNN/DailyMail test sample, the longest ones.
MAX_TRAINER_BYTES = 4192
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def trainer_inputs(texts: Iterable[str], max_bytes: int = MAX_TRAINER_BYTES) -> Iterator[str]:
    """The texts as SentencePiece trainer inputs, none longer than `max_bytes`, every word kept: a text
    that fits is passed as it is (so a corpus of short texts, such as the builtin one, trains exactly
    as before); a longer one goes line by line, a line that is still too long sentence by sentence, and
    a sentence that is still too long in runs of whole words."""
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


def train_sentencepiece(texts: Iterable[str], vocab_size: int, model_type: str = "bpe") -> T5Tokenizer:
    """Train a SentencePiece model in memory and wrap it as a T5 tokenizer (T5's special-token layout).

    T5Tokenizer segments with a unigram model. A `unigram`-trained vocabulary is used as is. For
    `bpe` the learned pieces get scores -(1 + rank/V), all in (-2, -1]: one piece always beats two,
    so Viterbi segmentation takes the longest known pieces, close to what the BPE merges produce.
    BPE is the default because on small, repetitive corpora (such as the builtin one) unigram
    training stops near 1,250 pieces and splits common words ("buy" -> "bu" + "y"), which makes
    copying names and numbers much harder for a small model.
    """
    # SentencePiece's protobuf module needs the `protobuf` package; import here so only this path pays.
    from sentencepiece import sentencepiece_model_pb2

    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        # every text reaches the trainer: long ones in pieces (see trainer_inputs)
        sentence_iterator=iter(list(trainer_inputs(texts))),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type=model_type,
        # T5's layout: <pad>=0 doubles as decoder start, </s>=1, <unk>=2, no BOS.
        pad_id=0, eos_id=1, unk_id=2, bos_id=-1,
        character_coverage=1.0,
        # A small corpus may not support the requested size; take what it supports.
        hard_vocab_limit=False,
        # One thread keeps the learned vocabulary identical from run to run.
        num_threads=1,
        minloglevel=2,
    )
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


def load_tokenizer(path: str) -> PreTrainedTokenizerBase:
    try:
        return AutoTokenizer.from_pretrained(path)
    except (OSError, ValueError) as e:
        raise ConfigError(f"cannot load a tokenizer from {path!r}: {e}") from None


def tokenize_records(
    records: list[dict],
    tokenizer: PreTrainedTokenizerBase,
    *,
    prefix: str,
    max_source_length: int,
    max_target_length: int,
    num_proc: int = 1,
) -> datasets.Dataset:
    """Records -> Dataset(id, input_ids, attention_mask, labels); padding happens per batch later."""

    def encode(batch):
        sources = [prefix + a for a in batch["article"]]
        enc = tokenizer(sources, max_length=max_source_length, truncation=True)
        enc["labels"] = tokenizer(text_target=batch["highlights"], max_length=max_target_length,
                                  truncation=True)["input_ids"]
        return enc

    # Only the text pairs and ids: other record fields (the builtin corpus' facts) are for scoring only.
    ds = datasets.Dataset.from_list([{k: r[k] for k in ("id", "article", "highlights")} for r in records])
    return ds.map(encode, batched=True, num_proc=num_proc if num_proc > 1 else None,
                  remove_columns=["article", "highlights"], desc="tokenize")


def prepare_tokenized(*, raw_dir, tokenizer_out, tokenized_out, params, pretrained: str | None) -> dict:
    """The tokenize stage's worker: tokenizer (trained or the teacher's) + tokenized splits on disk."""
    splits = {s: read_jsonl(raw_split(s, Path(raw_dir))) for s in SPLITS}  # validates every record
    if pretrained:
        tokenizer = load_tokenizer(pretrained)
    else:
        tokenizer = train_sentencepiece(
            (t for r in splits["train"] for t in (params.prefix + r["article"], r["highlights"])),
            params.vocab_size,
            params.model_type,
        )
    tokenized = datasets.DatasetDict({
        s: tokenize_records(recs, tokenizer, prefix=params.prefix, max_source_length=params.max_source_length,
                            max_target_length=params.max_target_length, num_proc=params.num_proc)
        for s, recs in splits.items()
    })
    with atomic_dir(tokenizer_out) as tmp:
        tokenizer.save_pretrained(tmp)
    with atomic_dir(tokenized_out) as tmp:
        tokenized.save_to_disk(str(tmp))
    return {s: len(d) for s, d in tokenized.items()} | {"vocab_size": len(tokenizer)}
