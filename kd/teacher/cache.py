"""Cached teacher outputs for logit distillation: the teacher runs once, students read its top-k.

Live logit KD runs the teacher on every student batch. Instead, `write_cache` runs it once over the
training split and keeps, for every real target token, the k largest teacher logits, their token
ids and, for every temperature T listed in `teacher_outputs.temperatures`, the logsumexp of the
full logits row divided by T; `TeacherCache.lookup` hands those rows to a student batch and
`cached_kl` turns them into the KD loss.

On-disk layout (one directory, written atomically):

    values.npy   float16 (n_tokens, k)  teacher log-probs z_j - L_1 of the top-k tokens (T = 1)
    ids.npy      uint16 (n_tokens, k)   their token ids, largest first (int32 if vocab_size > 65536)
    lse_t.npy    float32 (n_tokens, n_T)  L_T = logsumexp(z / T) of the FULL logits row z, one
                                        column per temperature of the manifest, in its order
    offsets.npy  int64   (n_examples + 1,)  example i's rows are offsets[i]:offsets[i+1]
    manifest.json  {"format_version", "k", "vocab_size", "temperatures", "n_examples", "n_tokens",
                    ...caller's keys}

Rows are the example's target tokens in order, so a batch's rows concatenated in batch order line
up with `student_logits[labels != -100]`. `values.npy` holds log-probs rather than raw logits
because float16 rounding error is relative to magnitude: the log-probs of the tokens that matter
are close to 0 and so stored finely, while raw logits can sit anywhere (tens, for a trained T5).
`lookup` adds L_1 back, so `TopK.values` are raw logits again. The temperatures must include 1.0
(L_1 is what the values are stored against).

The loss in `cached_kl` (temperature T, k stored tokens out of V, p = teacher, q = student):

* The KL is taken over k + 1 bins: the k stored tokens plus one "tail" bin holding the other V - k.
  Merging bins can only lower a KL (data processing inequality), so the cached KL is a lower bound
  of the full one; this merge is its only approximation.
* Teacher, exact at every cached T. The stored tokens' log-probs are z_j / T - L_T and the tail
  bin's is log(1 - sum_j exp(z_j / T - L_T)), the argument clamped at 0 (rounding can push the sum
  past 1; the tail's probability is 0 then), renormalized over the k + 1 bins (a no-op up to
  rounding unless the clamp fired). Because L_T is the logsumexp of the whole row at that T, the
  tail's mass is the true one whatever its shape. A T the cache does not list is refused
  (`TeacherCache.require_temperature`, and `cached_kl` itself): its L_T is not known. An empty
  tail gets probability 0 and contributes 0 to the KL (0 * log 0 = 0); k = V has no tail bin.
* Student. log q_j = log_softmax(s / T) at the stored ids; the tail bin's log-prob is the
  logsumexp of the other V - k entries of log_softmax(s / T) (computed by masking the stored ids,
  not as log(1 - sum_j q_j), which cancels catastrophically when the top-k hold almost all the
  mass), so the gradient reaches the tail tokens exactly.

The loss is the mean over tokens of that KL times T^2, the scaling `kd.losses.logit.LogitKD` uses.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from kd.errors import ConfigError
from kd.io import atomic_dir, atomic_write_json
from kd.params import TeacherOutputsParams

FORMAT_VERSION = 2
ARRAYS = ("values", "ids", "lse_t", "offsets")
RERUN = "rerun the teacher_outputs stage (dvc repro)"
DEFAULT_TEMPERATURES = TeacherOutputsParams().temperatures


def ids_dtype(vocab_size: int) -> np.dtype:
    """The smallest integer type the cache stores token ids 0..vocab_size-1 in."""
    return np.dtype(np.uint16 if vocab_size <= 2**16 else np.int32)


def _not_cached(what: str, temperature: float, holder: str, temperatures) -> ConfigError:
    return ConfigError(f"{what} {temperature} is not in the teacher_outputs cache ({holder} has temperatures "
                       f"{[float(t) for t in temperatures]}); add it to teacher_outputs.temperatures and {RERUN}")


@dataclass(frozen=True)
class TopK:
    """Teacher top-k logits for N target tokens (rows in row-major order of labels != -100)."""

    values: torch.Tensor  # (N, k) raw teacher logits at temperature 1 (any float dtype)
    ids: torch.Tensor  # (N, k) int64 token ids
    lse_t: torch.Tensor  # (N, n_T) float32 logsumexp of the FULL teacher logits row / T, per temperature
    temperatures: tuple[float, ...]  # the T of each column of lse_t; includes 1.0
    vocab_size: int  # V of the teacher

    def column(self, temperature: float) -> int:
        """The column of `lse_t` for `temperature`; ConfigError if these rows do not have it."""
        if temperature not in self.temperatures:
            raise _not_cached("logit KD temperature", temperature, "these rows", self.temperatures)
        return self.temperatures.index(temperature)

    @property
    def lse(self) -> torch.Tensor:
        """(N,) logsumexp of the full teacher logits row at T = 1 (what `values` were stored against)."""
        return self.lse_t[:, self.column(1.0)]


def _checked(temperatures) -> tuple[float, ...]:
    temperatures = tuple(float(t) for t in temperatures)
    if 1.0 not in temperatures or len(set(temperatures)) != len(temperatures) or min(temperatures) <= 0:
        raise ConfigError(f"teacher_outputs: temperatures {list(temperatures)} must be distinct, > 0 and "
                          "include 1.0")
    return temperatures


def topk_of(logits: torch.Tensor, k: int, temperatures=DEFAULT_TEMPERATURES) -> TopK:
    """The k largest entries of each row of `logits` (N, V), plus each full row's logsumexp at
    every temperature in `temperatures` (which must include 1.0)."""
    logits = logits.float()
    values, ids = logits.topk(min(k, logits.shape[-1]), dim=-1)  # (N, k) each, largest first
    temperatures = _checked(temperatures)
    # One (N, V) copy at a time; x / 1.0 == x, so the T = 1 column is exactly logsumexp(logits).
    lse_t = torch.stack([torch.logsumexp(logits if t == 1.0 else logits / t, dim=-1) for t in temperatures],
                        dim=-1)  # (N, n_T)
    return TopK(values=values, ids=ids, lse_t=lse_t, temperatures=temperatures, vocab_size=logits.shape[-1])


def _loader(dataset, collate, batch_size: int):
    # Dataset order, no shuffle: row i of the cache must be example i of the split.
    from kd.training.loop import epoch_loader  # kd.training.loop pulls in the whole training stack; import on use

    return epoch_loader(dataset, batch_size=batch_size, collate=collate, seed=0, epoch=0, shuffle=False)


def _label_lengths(dataset) -> np.ndarray:
    """Number of label tokens of every example, read in chunks so the label lists never all sit in memory."""
    out = [np.fromiter((len(x) for x in chunk["labels"]), dtype=np.int64)
           for chunk in dataset.select_columns(["labels"]).iter(batch_size=4096)]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def write_cache(out_dir, *, teacher, dataset, collate, batch_size: int, k: int, device, manifest: dict,
                temperatures=DEFAULT_TEMPERATURES) -> dict:
    """Run `teacher` once over `dataset` and write its top-k outputs into `out_dir` atomically, with
    the full rows' logsumexp at each of `temperatures` (distinct, > 0, including 1.0).

    `dataset` has unpadded `input_ids`, `attention_mask` and `labels` (every label token real);
    `collate` pads labels with -100 (kd.training.loop.make_collator). The teacher is put in eval mode so
    the cache holds its deterministic outputs. Arrays are filled batch by batch through memory
    maps, so memory stays O(batch) whatever the split size. Returns the manifest written.
    """
    reserved = {"format_version", "k", "vocab_size", "temperatures", "n_examples", "n_tokens"} & set(manifest)
    if reserved:
        raise ConfigError(f"teacher_outputs manifest: keys {sorted(reserved)} are set by the cache itself")
    temperatures = _checked(temperatures)
    device = torch.device(device)
    teacher.eval()
    vocab = int(teacher.config.vocab_size)
    k = min(int(k), vocab)
    lengths = _label_lengths(dataset)  # (n_examples,)
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    n_tokens = int(offsets[-1])
    if n_tokens == 0:
        raise ConfigError("teacher_outputs: the dataset has no target tokens to cache")
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda")

    with atomic_dir(out_dir) as tmp:
        values = np.lib.format.open_memmap(tmp / "values.npy", mode="w+", dtype=np.float16, shape=(n_tokens, k))
        ids = np.lib.format.open_memmap(tmp / "ids.npy", mode="w+", dtype=ids_dtype(vocab), shape=(n_tokens, k))
        lse_t = np.lib.format.open_memmap(tmp / "lse_t.npy", mode="w+", dtype=np.float32,
                                          shape=(n_tokens, len(temperatures)))
        row = done = 0  # rows written, examples done
        for batch in tqdm(_loader(dataset, collate, batch_size), desc="teacher_outputs"):
            batch = {name: t.to(device) for name, t in batch.items()}
            with torch.inference_mode(), autocast:
                logits = teacher(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 labels=batch["labels"]).logits  # (B, T, V)
            if logits.shape[-1] != vocab:
                raise ConfigError(f"teacher logits have {logits.shape[-1]} entries, config.vocab_size is {vocab}")
            mask = batch["labels"] != -100  # (B, T): real target tokens
            first = done
            done += mask.shape[0]
            # A -100 inside a dataset label would shift every later row; catch it here, not in training.
            if not np.array_equal(mask.sum(1).cpu().numpy(), lengths[first:done]):
                raise ConfigError(f"teacher_outputs: examples {first}..{done - 1} have fewer real label tokens "
                                  "after collation than in the dataset (a -100 inside a label?); every label "
                                  "token must be real")
            top = topk_of(logits[mask], k, temperatures)  # (n, k): this batch's real tokens in row-major order
            n = top.ids.shape[0]
            values[row:row + n] = (top.values - top.lse[:, None]).cpu().numpy()  # log-probs, see docstring
            ids[row:row + n] = top.ids.cpu().numpy().astype(ids.dtype)  # ids < vocab: fits
            lse_t[row:row + n] = top.lse_t.cpu().numpy()
            row += n
        values.flush(), ids.flush(), lse_t.flush()
        del values, ids, lse_t  # close the memory maps before the directory is renamed
        np.save(tmp / "offsets.npy", offsets)
        full = {"format_version": FORMAT_VERSION, "k": k, "vocab_size": vocab, "temperatures": list(temperatures),
                "n_examples": len(lengths), "n_tokens": n_tokens, **manifest}
        atomic_write_json(tmp / "manifest.json", full)
    return full


class TeacherCache:
    """A cache directory written by `write_cache`, memory-mapped read-only."""

    def __init__(self, path: Path, manifest: dict, arrays: dict[str, np.ndarray]):
        self.path = path
        self.manifest = manifest
        self._values, self._ids = arrays["values"], arrays["ids"]
        self._lse_t, self._offsets = arrays["lse_t"], arrays["offsets"]
        self.temperatures = tuple(float(t) for t in manifest["temperatures"])  # lse_t's columns

    def require_temperature(self, temperature: float, where: str) -> None:
        """Raise ConfigError naming the dotted params key `where` unless the cache has `temperature`."""
        if temperature not in self.temperatures:
            raise _not_cached(f"params: {where}", temperature, str(self.path), self.temperatures)

    @classmethod
    def open(cls, path) -> "TeacherCache":
        path = Path(path)
        missing = [f"{name}.npy" for name in ARRAYS if not (path / f"{name}.npy").is_file()]
        if not (path / "manifest.json").is_file():
            raise ConfigError(f"{path}: no teacher output cache here (missing "
                              f"{', '.join(missing + ['manifest.json'])}); run the teacher_outputs stage first")
        try:
            manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path / 'manifest.json'}: not valid JSON ({e}); {RERUN}") from e
        # Before the arrays: a cache of another format has other files, and the fix is to rerun, not to look for them.
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ConfigError(f"{path / 'manifest.json'}: format_version {manifest.get('format_version')!r}, "
                              f"this code reads {FORMAT_VERSION}; {RERUN}")
        if missing:
            raise ConfigError(f"{path}: no teacher output cache here (missing {', '.join(missing)}); "
                              "run the teacher_outputs stage first")
        arrays = {name: np.load(path / f"{name}.npy", mmap_mode="r") for name in ARRAYS}
        want = (arrays["values"].shape[0], len(manifest.get("temperatures", ())))
        if arrays["lse_t"].shape != want:
            raise ConfigError(f"{path}: lse_t.npy has shape {arrays['lse_t'].shape}, the manifest's "
                              f"temperatures say {want}; {RERUN}")
        return cls(path, manifest, arrays)

    def check(self, expected: dict) -> None:
        """Raise if any key of `expected` differs from the manifest (cache made for other inputs)."""
        bad = [f"{key}: cached {self.manifest.get(key, '<missing>')!r}, expected {value!r}"
               for key, value in expected.items() if self.manifest.get(key, object()) != value]
        if bad:
            raise ConfigError(f"{self.path}: teacher output cache was made for another teacher/data/tokenizer "
                              f"({'; '.join(bad)}); {RERUN}")

    def outputs(self, batch, **_) -> TopK:
        """The teacher's side for a batch (the source interface of kd.training.objective): its rows, aligned
        with the student's logits[labels != -100]."""
        mask = batch["labels"] != -100  # (B, T)
        return self.lookup(batch["idx"], mask.sum(dim=1), device=batch["labels"].device)

    def lookup(self, indices: torch.Tensor, lengths: torch.Tensor, device) -> TopK:
        """Rows of examples `indices` (B,), concatenated in batch order: aligned with logits[labels != -100].

        `lengths` (B,) is each example's number of real label tokens in the batch; it must match the
        cache, else the rows would silently pair with the wrong tokens.
        """
        idx = indices.cpu().numpy().astype(np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= len(self._offsets) - 1):
            raise ConfigError(f"{self.path}: example index out of range 0..{len(self._offsets) - 2}; {RERUN}")
        starts, ends = self._offsets[idx], self._offsets[idx + 1]
        want = lengths.cpu().numpy().astype(np.int64)
        if not np.array_equal(ends - starts, want):
            b = int(np.flatnonzero(ends - starts != want)[0])
            raise ConfigError(f"{self.path}: example {idx[b]} has {ends[b] - starts[b]} cached target tokens "
                              f"but {want[b]} in the batch: the cache does not match the data; {RERUN}")
        rows = np.concatenate([np.arange(s, e) for s, e in zip(starts, ends)]) if idx.size else np.zeros(0, np.int64)
        # Fancy indexing a memmap copies just these rows into memory.
        lse_t = torch.from_numpy(self._lse_t[rows]).to(device)  # (N, n_T)
        lse = lse_t[:, self.temperatures.index(1.0)]  # (N,) at T = 1: what values.npy was stored against
        values = torch.from_numpy(self._values[rows]).to(device).float() + lse[:, None]  # (N, k) raw logits
        ids = torch.from_numpy(self._ids[rows].astype(np.int64)).to(device)  # (N, k)
        return TopK(values=values, ids=ids, lse_t=lse_t, temperatures=self.temperatures,
                    vocab_size=int(self.manifest["vocab_size"]))


def _teacher_log_probs(top: TopK, temperature: float) -> torch.Tensor:
    """(N, k + 1) teacher log-probs at `temperature` over [stored tokens..., tail bin]; see module docstring.
    Exact for any temperature the rows have (ConfigError for another)."""
    t = temperature
    lse = top.lse_t[:, top.column(t)].float()  # (N,) logsumexp of the full row / T
    log_p = top.values.float() / t - lse[:, None]  # (N, k) stored tokens' log-probs at T (x / 1.0 == x)
    n_tail = top.vocab_size - log_p.shape[-1]
    if n_tail == 0:
        tail = torch.full_like(log_p[:, :1], -math.inf)  # (N, 1): no tail tokens at all
    else:
        # The tail's mass at T; clamp because rounding can make the stored mass exceed 1 (log = -inf).
        log_s = torch.log((1.0 - log_p.exp().sum(-1, keepdim=True)).clamp(min=0.0))  # (N, 1)
        # tail = log_s up to rounding, written as log n + (log_s - log n): plain log_s differs in the
        # last bit on some rows, and this form keeps T = 1 students training to the same weights bit for bit.
        log_n = math.log(n_tail)
        tail = log_n + (log_s - log_n)  # (N, 1)
    return torch.log_softmax(torch.cat([log_p, tail], dim=-1), dim=-1)  # (N, k + 1)


def cached_kl(student_logits: torch.Tensor, top: TopK, temperature: float) -> torch.Tensor:
    """Mean over tokens of KL(teacher_T || student_T) over the k + 1 bins, times T^2.

    `student_logits` (N, V) are the student's logits at the real target tokens (already masked),
    in the same order as `top`'s rows. Computed in float32. `temperature` must be one of
    `top.temperatures` (ConfigError otherwise: the tail's mass is known only there).
    """
    n, vocab = student_logits.shape
    if vocab != top.vocab_size or top.ids.shape[0] != n:
        raise ConfigError(f"student logits {tuple(student_logits.shape)} do not match cached teacher rows "
                          f"{tuple(top.ids.shape)} with vocab_size {top.vocab_size}")
    t = temperature
    log_p = _teacher_log_probs(top, t)  # (N, k + 1)
    # Zero log-probs where p = 0 so p * (log p - log q) is 0 * finite, not 0 * -inf = NaN.
    p = log_p.exp()
    log_p = torch.where(p > 0, log_p, torch.zeros_like(log_p))

    log_q_all = torch.log_softmax(student_logits.float() / t, dim=-1)  # (N, V)
    log_q = log_q_all.gather(-1, top.ids)  # (N, k)
    if top.vocab_size > top.ids.shape[-1]:
        stored = torch.zeros_like(log_q_all, dtype=torch.bool).scatter_(-1, top.ids, True)
        log_q_tail = torch.logsumexp(log_q_all.masked_fill(stored, -math.inf), dim=-1, keepdim=True)  # (N, 1)
    else:
        # k = V: the tail bin is empty on both sides (p = 0); any finite value keeps the term at 0
        # and avoids the NaN gradient of a logsumexp over nothing.
        log_q_tail = torch.zeros_like(log_q[:, :1])
    log_q = torch.cat([log_q, log_q_tail], dim=-1)  # (N, k + 1)

    kl = (p * (log_p - log_q)).sum()
    return kl / max(n, 1) * t * t


def cache_identity(*, teacher_id: str, tokenizer, train_ds, with_size: bool = True) -> dict:
    """What a teacher-outputs cache must have been made from: this teacher (`kd.training.run.file_digest` of its
    weights), tokenizer and data (the cache records the number of examples itself; checks compare it too)."""
    vocab = json.dumps(sorted(tokenizer.get_vocab().items())).encode()
    identity = {"teacher": teacher_id,
                "tokenizer": hashlib.sha256(vocab).hexdigest()[:16], "data": train_ds._fingerprint}
    return identity | ({"n_examples": len(train_ds)} if with_size else {})


def open_teacher_cache(path: Path, *, teacher_id: str, tokenizer, train_ds) -> TeacherCache:
    """The cache, checked against the teacher, tokenizer and data this run uses (never silent reuse)."""
    cache = TeacherCache.open(path)
    cache.check(cache_identity(teacher_id=teacher_id, tokenizer=tokenizer, train_ds=train_ds))
    return cache
