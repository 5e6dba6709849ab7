"""Shared fixtures: tiny T5 models and batches, small enough for a 2-core CPU."""

from __future__ import annotations

import os
import sys
from pathlib import Path

# One torch thread here and in every stage subprocess (inherited): the suite runs as two pytest-xdist
# workers on two cores, and tiny models gain nothing from a second thread. Set before torch is imported.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
# Stage subprocesses run as `python -m stages.<name>` from temp dirs: they find this checkout's code.
os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
SHARED_CNNDM = ROOT.parent / "shared" / "data" / "cnn_dailymail"


def tiny_t5(d_model=32, layers=2, heads=2, vocab=64, seed=0, attn="eager", d_ff=None, dec_layers=None):
    from transformers import T5Config, T5ForConditionalGeneration

    torch.manual_seed(seed)
    cfg = T5Config(vocab_size=vocab, d_model=d_model, d_kv=d_model // heads, d_ff=d_ff or 2 * d_model,
                   num_layers=layers, num_decoder_layers=dec_layers or layers, num_heads=heads,
                   dropout_rate=0.0, pad_token_id=0, eos_token_id=1, decoder_start_token_id=0)
    return T5ForConditionalGeneration._from_config(cfg, attn_implementation=attn).eval()


def tiny_batch(batch=3, src=7, tgt=5, vocab=64, seed=1, pad_tail=2):
    """A batch whose last example has `pad_tail` padded source and target positions."""
    g = torch.Generator().manual_seed(seed)
    input_ids = torch.randint(3, vocab, (batch, src), generator=g)
    labels = torch.randint(3, vocab, (batch, tgt), generator=g)
    attention_mask = torch.ones(batch, src, dtype=torch.long)
    if pad_tail:
        input_ids[-1, -pad_tail:] = 0
        attention_mask[-1, -pad_tail:] = 0
        labels[-1, -pad_tail:] = -100
    return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}


@pytest.fixture
def batch():
    return tiny_batch()


TINY_RECORDS = 24


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    """Tokenizer + tokenized splits from a few builtin records (what the tokenize stage writes)."""
    import datasets

    from kd.data.builtin import generate
    from kd.data.tokenization import tokenize_records, train_sentencepiece

    root = tmp_path_factory.mktemp("tiny_data")
    splits = {s: generate(s, n, 0) for s, n in (("train", TINY_RECORDS), ("validation", 8), ("test", 8))}
    tok = train_sentencepiece((r["article"] for r in splits["train"]), 200)
    tok.save_pretrained(root / "tokenizer")
    ds = datasets.DatasetDict({s: tokenize_records(r, tok, prefix="summarize: ", max_source_length=48,
                                                   max_target_length=16) for s, r in splits.items()})
    ds.save_to_disk(str(root / "tokenized"))
    return root


def make_objective(losses: dict, teacher=None, student=None, label_weight: float = 1.0):
    """The training objective of {loss name: settings mapping}, built as a recipe's is (kd.students.recipe)."""
    from kd.students.recipe import make_objective as build, parse_losses

    return build(parse_losses(losses, "test"), label_weight=label_weight,
                 teacher_config=teacher.config if teacher is not None else None,
                 student_config=student.config if student is not None else None, where="test")


def live(teacher):
    """A teacher model as the objective's source of teacher outputs."""
    from kd.training.objective import LiveTeacher

    return LiveTeacher(teacher)
