"""Tokenizers and tokenized splits.

Models built from config get a SentencePiece tokenizer (BPE or unigram) trained on the training
split and wrapped as a transformers `T5Tokenizer` (so `AutoTokenizer.from_pretrained` loads it); pretrained
models bring their own tokenizer.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Iterable

import datasets
import sentencepiece as spm
from transformers import AutoTokenizer, PreTrainedTokenizerBase, T5Tokenizer

from kd.data.sources import SPLITS, read_jsonl
from kd.errors import ConfigError
from kd.io import atomic_dir
from kd.paths import raw_split


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
        sentence_iterator=iter(list(texts)),
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
