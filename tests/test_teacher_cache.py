"""Cached teacher outputs: write_cache -> TeacherCache.open -> lookup -> cached_kl on a tiny T5.

The cache stores teacher log-probs in float16, whose round-to-nearest error is at most 2^-11 of the
value's magnitude; the tolerances below are derived from that (see `_fp16_eps`).
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import tiny_t5

from kd.errors import ConfigError
from kd.losses.logit import LogitKD
from kd.teacher_cache import TeacherCache, TopK, cached_kl, topk_of, write_cache

BATCH = 5  # 24 examples: four full batches and a short last one
FP16_REL = 2.0**-11  # float16 has 10 explicit mantissa bits: rounding error <= 2^-11 relative
ORDER_ABS = 1e-5  # float32 differences from running the teacher on a differently padded batch


class Out:  # the part of Seq2SeqLMOutput a logit loss reads
    def __init__(self, logits):
        self.logits = logits


@pytest.fixture(scope="module")
def setup(tiny_data):
    """Tokenizer, collator and a train split with ragged labels and sources, so batches have padding."""
    import datasets
    from transformers import AutoTokenizer

    from kd.train import make_collator

    tok = AutoTokenizer.from_pretrained(tiny_data / "tokenizer")
    train = datasets.load_from_disk(str(tiny_data / "tokenized"))["train"]

    def ragged(ex, i):  # every tiny label is truncated to the same 16 tokens; vary them
        n_src, n_tgt = 20 + 3 * (i % 9), 3 + (5 * i) % 14
        return {"input_ids": ex["input_ids"][:n_src], "attention_mask": ex["attention_mask"][:n_src],
                "labels": ex["labels"][:n_tgt]}

    ds = train.map(ragged, with_indices=True).select_columns(["input_ids", "attention_mask", "labels"])
    assert len({len(x) for x in ds["labels"]}) > 5
    return tok, make_collator(tok), ds, len(tok)


def _teacher(vocab):
    return tiny_t5(vocab=vocab, seed=1)


def _write(path, setup, k, model=None, manifest=None):
    _, collate, ds, vocab = setup
    return write_cache(path, teacher=model or _teacher(vocab), dataset=ds, collate=collate,
                       batch_size=BATCH, k=k, device="cpu", manifest=manifest or {"teacher": "t1"})


@pytest.fixture(scope="module")
def full_cache(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "full"
    _write(path, setup, k=setup[3])
    return TeacherCache.open(path)


@pytest.fixture(scope="module")
def top4_cache(setup, tmp_path_factory):
    path = tmp_path_factory.mktemp("cache") / "top4"
    _write(path, setup, k=4)
    return TeacherCache.open(path)


def _batch(setup, indices):
    """Collated examples `indices` plus live teacher logits and student logits (a leaf with grad)."""
    _, collate, ds, vocab = setup
    batch = collate([ds[int(i)] for i in indices])
    with torch.no_grad():
        t_logits = _teacher(vocab)(**batch).logits  # (B, T, V)
        s_logits = tiny_t5(vocab=vocab, seed=2)(**batch).logits  # (B, T, V)
    return batch, t_logits, s_logits.requires_grad_()


def _grad(loss, x):
    (g,) = torch.autograd.grad(loss, x)
    return g


def _fp16_eps(t_logits, mask):
    """Bound on the error of one stored teacher log-prob: fp16 rounding plus batch-order noise."""
    log_p = torch.log_softmax(t_logits[mask].float(), -1)
    return FP16_REL * log_p.abs().max().item() + ORDER_ABS


def test_manifest_and_layout(full_cache, setup):
    _, _, ds, vocab = setup
    m = full_cache.manifest
    n_tokens = sum(len(x) for x in ds["labels"])
    assert m == {"format_version": 1, "k": vocab, "vocab_size": vocab, "n_examples": len(ds),
                 "n_tokens": n_tokens, "teacher": "t1"}
    arrays = {p.stem: np.load(p, mmap_mode="r") for p in full_cache.path.glob("*.npy")}
    assert {n: (a.dtype, a.shape) for n, a in arrays.items()} == {
        "values": (np.float16, (n_tokens, vocab)), "ids": (np.int32, (n_tokens, vocab)),
        "lse": (np.float32, (n_tokens,)), "offsets": (np.int64, (len(ds) + 1,))}
    assert np.array_equal(np.diff(arrays["offsets"]), [len(x) for x in ds["labels"]])


@pytest.mark.parametrize("temperature", [1.0, 2.0])
def test_full_k_matches_live_logit_kd(full_cache, setup, temperature, record_property):
    indices = torch.tensor([7, 2, 19, 11, 23])  # not one of the batches the cache was written from
    batch, t_logits, s_logits = _batch(setup, indices)
    mask = batch["labels"] != -100  # (B, T)
    assert not mask.all()  # padding present, so the alignment is exercised
    n = int(mask.sum())
    top = full_cache.lookup(indices, mask.sum(1), "cpu")

    cached = cached_kl(s_logits[mask], top, temperature)
    g_cached = _grad(cached, s_logits)

    # 1) The arithmetic is exact: live LogitKD on the dequantized teacher logits gives the same loss.
    dequant = torch.zeros_like(t_logits)
    dequant[mask] = torch.empty(n, top.vocab_size).scatter_(-1, top.ids, top.values.float())  # (N, V)
    kd = LogitKD(temperature=temperature)
    same = kd(Out(s_logits), Out(dequant), batch)
    assert cached.item() == pytest.approx(same.item(), rel=1e-5, abs=1e-7)
    torch.testing.assert_close(g_cached, _grad(same, s_logits), rtol=1e-4, atol=1e-8)

    # 2) Against the true live loss the only error is fp16 storage: each stored log-prob is off by
    # |d_j| <= eps_j (2^-11 of its magnitude, plus batch-order noise). Since dKL_T / d(a_j / T) =
    # p_j (log(p_j / q_j) - KL_T) at temperature T, the loss (KL_T * T^2) moves by at most
    # T * sum_j eps_j p_j |log(p_j / q_j) - KL_T| per token; the gradient T (q - p) / N moves by at
    # most 2 max(eps) max(p) / N. Both bounds are first order, hence the 1.5 margin.
    live = kd(Out(s_logits), Out(t_logits), batch)
    g_live = _grad(live, s_logits)
    log_p1 = torch.log_softmax(t_logits[mask], -1)  # (N, V) the log-probs that were stored
    eps_j = FP16_REL * log_p1.abs() + ORDER_ABS  # (N, V)
    log_p = torch.log_softmax(t_logits[mask] / temperature, -1)
    log_q = torch.log_softmax(s_logits[mask].detach() / temperature, -1)
    kl_n = (log_p.exp() * (log_p - log_q)).sum(-1, keepdim=True)  # (N, 1)
    per_token = (eps_j * log_p.exp() * (log_p - log_q - kl_n).abs()).sum(-1)  # (N,)
    loss_tol = 1.5 * temperature * per_token.mean().item()
    grad_tol = 1.5 * 2 * eps_j.max().item() * log_p.exp().max().item() / n
    loss_err, grad_err = abs(cached.item() - live.item()), (g_cached - g_live).abs().max().item()
    record_property("loss_abs_err", loss_err), record_property("loss_tol", loss_tol)
    record_property("grad_abs_err", grad_err), record_property("grad_tol", grad_tol)
    print(f"T={temperature}: live {live.item():.6g} cached {cached.item():.6g} loss err {loss_err:.2e} "
          f"(tol {loss_tol:.2e}) grad err {grad_err:.2e} (tol {grad_tol:.2e})")
    assert loss_err <= loss_tol
    assert grad_err <= grad_tol
    assert (g_cached[~mask] == 0).all()  # padded positions get no gradient


def _merged_kl(t_logits, s_logits, ids):
    """Reference: KL(p || q) at T = 1 over [the k `ids`, everything else], from full (N, V) logits."""
    log_p, log_q = torch.log_softmax(t_logits, -1), torch.log_softmax(s_logits, -1)  # (N, V)
    other = torch.ones_like(log_p, dtype=torch.bool).scatter_(-1, ids, False)  # (N, V): tail tokens

    def bins(lp):  # (N, k + 1)
        return torch.cat([lp.gather(-1, ids), lp.masked_fill(~other, -torch.inf).logsumexp(-1, keepdim=True)], -1)

    bp, bq = bins(log_p), bins(log_q)
    return (bp.exp() * (bp - bq)).sum(-1).mean(), bp, bq


# Measured: relative gap 0.706. A random tiny teacher is flat (its top 4 of 200 hold ~20% of the
# mass), so most of the KL lives inside the merged tail; a trained, peaked teacher loses far less.
# The bound only catches a gross regression; exactness is checked against `_merged_kl` above it.
TOP4_MAX_REL_GAP = 0.75


def test_small_k_is_the_merged_bin_kl_and_a_lower_bound_at_t1(top4_cache, setup, record_property):
    _, _, ds, _ = setup
    indices = torch.arange(len(ds))
    batch, t_logits, s_logits = _batch(setup, indices)
    mask = batch["labels"] != -100
    top = top4_cache.lookup(indices, mask.sum(1), "cpu")
    assert top.ids.shape == (int(mask.sum()), 4)

    live = LogitKD(temperature=1.0)(Out(s_logits), Out(t_logits), batch).item()
    cached_t = cached_kl(s_logits[mask], top, 1.0)
    cached = cached_t.item()
    # At T = 1 the tail bin is exact, so cached equals the 5-bin KL of the full distributions up to
    # fp16 storage. Bound as in the k = V test at T = 1, except that the tail's log-prob is derived,
    # log(1 - sum p_j), so its error is the stored ones' scaled by sum p_j / p_tail.
    merged, bp, bq = _merged_kl(t_logits[mask], s_logits[mask].detach(), top.ids)
    merged = merged.item()
    p_top = bp[:, :-1].exp().sum(-1)
    eps = _fp16_eps(t_logits, mask) * (1 + (p_top / (1 - p_top)).max().item())
    tol = 1.5 * 2 * eps * (bp - bq).abs().max().item()
    record_property("top4_merged_abs_err", abs(cached - merged)), record_property("top4_merged_tol", tol)
    assert abs(cached - merged) <= tol

    gap = (live - cached) / live
    record_property("top4_rel_gap", gap)
    print(f"k=4 of V={top.vocab_size}, T=1: live {live:.6g} cached {cached:.6g} merged {merged:.6g} "
          f"relative gap {gap:.3f}")
    assert live - cached >= -1e-4 * live  # merging bins cannot raise a KL; slack for fp16 storage
    assert gap < TOP4_MAX_REL_GAP
    g = _grad(cached_t, s_logits)
    assert torch.isfinite(g).all() and g[mask].abs().sum() > 0

    at_t2 = cached_kl(s_logits[mask], top, 2.0)
    assert torch.isfinite(at_t2) and at_t2.item() > 0
    record_property("top4_t2_cached", at_t2.item())


@pytest.mark.parametrize("temperature", [1.0, 2.0, 4.0])
def test_tail_formula_is_exact_for_a_uniform_teacher_tail(temperature):
    # The tail assumption (mass spread evenly over the V - k tail tokens) holds exactly here, so at
    # any T the cached loss and its gradient must equal the (k + 1)-bin KL of the full distributions.
    g = torch.Generator().manual_seed(0)
    v, k, n = 10, 3, 4
    t_logits = torch.full((n, v), -1.0)
    t_logits[:, :k] = 2.0 + torch.rand(n, k, generator=g)  # top-k distinct, the other 7 equal
    t_logits = t_logits[:, torch.randperm(v, generator=g)]  # stored ids are not 0..k-1
    s = torch.randn(n, v, generator=g, requires_grad=True)
    top = topk_of(t_logits, k)

    def bins(logits):  # (N, k + 1) log-probs at T over [stored ids, everything else]
        lp = torch.log_softmax(logits / temperature, -1)
        other = torch.ones_like(lp, dtype=torch.bool).scatter_(-1, top.ids, False)
        return torch.cat([lp.gather(-1, top.ids), lp.masked_fill(~other, -torch.inf).logsumexp(-1, keepdim=True)], -1)

    bp, bq = bins(t_logits), bins(s)
    want = (bp.exp() * (bp - bq)).sum(-1).mean() * temperature**2
    got = cached_kl(s, top, temperature)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    torch.testing.assert_close(_grad(got, s), _grad(want, s), rtol=1e-4, atol=1e-7)


def test_empty_tail_is_finite_with_finite_gradients():
    # Teacher whose top-2 hold all the mass (tail S = 0) and whose stored mass rounds past 1.
    v, n = 6, 3
    logits = torch.tensor([[50.0, 49.0, -1e4, -1e4, -1e4, -1e4]]).repeat(n, 1)
    top = topk_of(logits, 2)
    top = TopK(values=top.values + 1e-3, ids=top.ids, lse=top.lse, vocab_size=v)  # sum p_j > 1
    s = torch.randn(n, v, requires_grad=True)
    for temperature in (1.0, 3.0):
        loss = cached_kl(s, top, temperature)
        assert torch.isfinite(loss)
        assert torch.isfinite(_grad(loss, s)).all()
    # k = V: no tail bin at all; equals live KL exactly.
    full = topk_of(logits, v)
    live = LogitKD(2.0)(Out(s[None]), Out(logits[None]), {"labels": torch.ones(1, n, dtype=torch.long)})
    assert cached_kl(s, full, 2.0).item() == pytest.approx(live.item(), rel=1e-5)


def test_lookup_aligns_rows_with_a_shuffled_batch(top4_cache, setup):
    indices = torch.tensor([17, 0, 9, 22, 4, 13])
    batch, t_logits, _ = _batch(setup, indices)
    mask = batch["labels"] != -100
    assert not mask.all()
    got = top4_cache.lookup(indices, mask.sum(1), "cpu")
    want = topk_of(t_logits[mask], 4)  # (N, 4): the rows a student sees at logits[mask]
    assert torch.equal(got.ids, want.ids)
    torch.testing.assert_close(got.lse, want.lse, rtol=0, atol=ORDER_ABS)
    # values = stored fp16 log-prob + lse: fp16 error relative to the log-prob's magnitude
    log_p = want.values - want.lse[:, None]
    assert ((got.values - want.values).abs() <= FP16_REL * log_p.abs() + ORDER_ABS).all()


def test_check_names_each_mismatching_key(full_cache):
    full_cache.check({"teacher": "t1", "k": full_cache.manifest["k"]})  # matching: no error
    with pytest.raises(ConfigError) as e:
        full_cache.check({"teacher": "t2", "k": 7, "tokenizer": "abc"})
    msg = str(e.value)
    for part in ("teacher: cached 't1', expected 't2'", "k: cached", "expected 7",
                 "tokenizer: cached '<missing>'", "teacher_outputs", "dvc repro"):
        assert part in msg


def test_open_missing_cache_names_the_path(tmp_path):
    path = tmp_path / "nope"
    with pytest.raises(ConfigError, match="teacher_outputs") as e:
        TeacherCache.open(path)
    assert str(path) in str(e.value)


def test_open_rejects_partial_cache(full_cache, tmp_path):
    import shutil

    partial = tmp_path / "partial"
    shutil.copytree(full_cache.path, partial)
    (partial / "offsets.npy").unlink()
    with pytest.raises(ConfigError, match="offsets.npy"):
        TeacherCache.open(partial)


def test_lookup_rejects_length_mismatch(full_cache, setup):
    _, _, ds, _ = setup
    indices = torch.tensor([3, 1])
    lengths = torch.tensor([len(ds[3]["labels"]), len(ds[1]["labels"]) - 1])
    with pytest.raises(ConfigError, match="example 1 has .* does not match the data"):
        full_cache.lookup(indices, lengths, "cpu")
    with pytest.raises(ConfigError, match="out of range"):
        full_cache.lookup(torch.tensor([len(ds)]), torch.tensor([1]), "cpu")


def test_failed_write_leaves_previous_cache_intact(setup, tmp_path):
    vocab = setup[3]
    out = tmp_path / "cache"
    _write(out, setup, k=4, manifest={"teacher": "v1"})
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def crashing_teacher():
        teacher, calls = _teacher(vocab), []

        def hook(module, args, kwargs):
            calls.append(1)
            if len(calls) == 2:
                raise RuntimeError("teacher died on batch 2")

        teacher.register_forward_pre_hook(hook, with_kwargs=True)
        return teacher

    with pytest.raises(RuntimeError, match="batch 2"):
        _write(out, setup, k=4, model=crashing_teacher(), manifest={"teacher": "v2"})
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert json.loads((out / "manifest.json").read_text())["teacher"] == "v1"

    fresh = tmp_path / "fresh"
    with pytest.raises(RuntimeError, match="batch 2"):
        _write(fresh, setup, k=4, model=crashing_teacher())
    assert not fresh.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cache"]  # no temp dirs left behind
