"""The speed half of the benchmark: every model timed in one run, interleaved, median of rounds.

Timing each model in its own stage run would compare runs minutes apart, under whatever else the
machine was doing then; timing them side by side spreads that drift over every model alike. So each
model lives in its own worker process (its peak memory is its own, not the high-water mark
of the models loaded before it) and the parent drives rounds over a pipe: round r times every model
once, the order reversed every other round (so no model always runs first, or right after the same
neighbour), and each model's result is the median of its rounds.

A timed run summarises the first `benchmark.speed_samples` test articles with the quality stage's
decoding (kd.models.generation, `benchmark.num_beams`, `max_new_tokens`, `batch_size`), after
`warmup_batches` untimed batches right after loading. The students are also timed greedy, in the same
rounds, right after their beam run: that is how a distilled student is served, and the report sets it
against the teacher at `benchmark.num_beams`. Peak memory is peak RSS above the process
before the model was loaded on the CPU, `torch.cuda.max_memory_allocated` on CUDA.
"""

from __future__ import annotations

import datetime
import logging
import multiprocessing as mp
import os
import platform
import resource
import socket
import statistics
import sys
import time
import traceback
from multiprocessing.connection import wait as wait_for_any
from pathlib import Path
from typing import Collection, Mapping, Sequence

from kd.errors import ConfigError

log = logging.getLogger(__name__)

DIGITS = 4


# ----------------------------------------------------------------------------- pure helpers


def round_orders(names: Sequence[str], repeats: int) -> list[list[str]]:
    """The order the models run in, per round: as given in even rounds, reversed in odd ones."""
    return [list(names) if r % 2 == 0 else list(reversed(names)) for r in range(repeats)]


def speed_of(round_s: Sequence[float], n_samples: int) -> dict:
    """samples/s and ms/sample of the median round (`round_s`: seconds per round for `n_samples`)."""
    median = statistics.median(round_s)
    return {"samples_per_s": round(n_samples / median, DIGITS),
            "ms_per_sample": round(1000 * median / n_samples, DIGITS)}


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str:
    """The CPU's model name from /proc/cpuinfo (x86 "model name", or ARM's "Model"/"CPU part"),
    else platform.processor()."""
    try:
        text = Path(cpuinfo).read_text(errors="replace")
    except OSError:
        text = ""
    for key in ("model name", "Model", "Hardware", "CPU part"):
        for line in text.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine() or "unknown"


def host_info(*, device: str, torch_threads: int, n_samples: int, rounds: int) -> dict:
    """Where and how the speed numbers were measured."""
    import torch
    import transformers

    host = {"hostname": socket.gethostname(), "cpu": cpu_model(), "logical_cores": os.cpu_count(),
            "torch_threads": torch_threads, "device": device}
    if device.startswith("cuda"):
        host["gpu"] = torch.cuda.get_device_name(device)
    host |= {"torch": torch.__version__, "transformers": transformers.__version__,
             "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "n_samples": n_samples, "rounds": rounds}
    return host


# ----------------------------------------------------------------------------- the worker


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _peak_rss_mb() -> float:
    # ru_maxrss is KiB on Linux, bytes on macOS.
    scale = 1 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 2**20


def _send(conn, message) -> None:
    try:
        conn.send(message)
    except OSError:  # the parent has gone or given up on this worker (BrokenPipeError)
        pass


def _worker(conn, model_dir: str, articles: list[str], settings: dict) -> None:
    """One model's process: load, warm up, report "ready"; then time a run per "time", and on "stop"
    report the peak memory. Errors go back over the pipe (a ConfigError as its message)."""
    try:
        import torch

        import kd.models.modeling  # noqa: F401  (transformers: imported before the baseline, not counted as the model's)
        import kd.data.tokenization  # noqa: F401
        from kd.models.generation import generate_all, load_summarizer

        device = settings["device"]
        decoding = {k: settings[k] for k in ("batch_size", "prefix", "max_source_length", "max_new_tokens")}
        base_rss = _rss_mb()
        model, tokenizer = load_summarizer(model_dir, device)
        if device.startswith("cuda"):
            torch.cuda.reset_peak_memory_stats()
        warmup = articles[: settings["warmup_batches"] * settings["batch_size"]]
        for num_beams in settings["beams"] if warmup else ():
            generate_all(model, tokenizer, warmup, device=device, num_beams=num_beams, **decoding)
        _send(conn, ("ready", {"torch_threads": torch.get_num_threads()}))
        while (command := conn.recv()) != "stop":  # ("time", num_beams)
            start = time.perf_counter()
            generate_all(model, tokenizer, articles, device=device, num_beams=command[1], **decoding)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            _send(conn, ("time", time.perf_counter() - start))
        peak = (torch.cuda.max_memory_allocated() / 2**20 if device.startswith("cuda")
                else _peak_rss_mb() - base_rss)
        _send(conn, ("stopped", {"peak_mem_mb": peak}))
    except EOFError:  # the parent closed the pipe: stop quietly
        pass
    except ConfigError as e:
        _send(conn, ("config_error", str(e)))
    except Exception:  # anything else: the parent raises it with this traceback
        _send(conn, ("error", traceback.format_exc()))
    finally:
        conn.close()


class _Worker:
    """The parent's handle on one model's worker process."""

    def __init__(self, ctx, name: str, model_dir: Path, articles: list[str], settings: dict):
        self.name = name
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_worker, args=(child, str(model_dir), articles, settings),
                                name=f"speed-{name}", daemon=True)
        self.proc.start()
        child.close()  # the child holds its end; EOF on ours then means the child is gone

    def ask(self, command: str | tuple | None, expect: str):
        if command is not None:
            self.conn.send(command)
        try:
            kind, payload = self.conn.recv()
        except EOFError:
            self.proc.join(timeout=5)
            raise RuntimeError(f"speed: the worker timing {self.name!r} died (exit code {self.proc.exitcode}); "
                               f"out of memory?") from None
        if kind == "config_error":
            raise ConfigError(f"speed: {self.name}: {payload}")
        if kind == "error":
            raise RuntimeError(f"speed: the worker timing {self.name!r} failed:\n{payload}")
        if kind != expect:
            raise RuntimeError(f"speed: the worker timing {self.name!r} answered {kind!r}, expected {expect!r}")
        return payload

    def close(self, *, now: bool = False) -> None:
        """Stop the worker: it exits at EOF on the pipe; `now` (another worker failed) does not wait
        for it to finish loading or decoding first."""
        self.conn.close()  # a worker blocked in recv() gets EOFError and exits
        self.proc.join(timeout=0 if now else 30)
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join()


# ----------------------------------------------------------------------------- the parent


def time_models(*, models: Mapping[str, str | Path], articles: Sequence[str], prefix: str, max_source_length: int,
                num_beams: int, max_new_tokens: int, batch_size: int, warmup_batches: int, repeats: int,
                device: str = "auto", greedy_too: Collection[str] = ()) -> dict:
    """{"host": {...}, <name>: {samples_per_s, ms_per_sample, peak_mem_mb, round_s, round_position,
    num_beams[, greedy]}}, timed on `device` (auto, cpu or cuda: params benchmark.device).

    round_s[r] is the model's time in round r, round_position[r] its place in that round's order. The
    models named in `greedy_too` are also timed greedy (when `num_beams` > 1) right after their beam
    run in every round: `greedy` {samples_per_s, ms_per_sample, round_s}."""
    from kd.models.generation import check_model_dir

    if not models:
        raise ConfigError("speed: no models to time")
    if "host" in models:
        raise ConfigError("speed: 'host' names the host block of the output; give the model another name")
    if not articles:
        raise ConfigError("speed: no test articles to time on")
    if repeats < 1:
        raise ConfigError(f"speed: repeats must be >= 1, got {repeats}")
    for path in models.values():
        check_model_dir(path)  # before starting any worker, or importing torch
    from kd.models.modeling import resolve_device

    device = resolve_device(device)
    unknown = sorted(set(greedy_too) - set(models))
    if unknown:
        raise ConfigError(f"speed: greedy timing asked for {unknown}, which are not among the models timed")
    beams = {name: [num_beams] + ([1] if name in greedy_too and num_beams > 1 else []) for name in models}
    settings = {"device": device, "prefix": prefix, "max_source_length": max_source_length,
                "max_new_tokens": max_new_tokens, "batch_size": batch_size, "warmup_batches": warmup_batches}
    # Each worker is a fresh process (its own peak memory), forked from a server that imported torch and
    # transformers once: a spawned worker would spend seconds importing them again, per model. The
    # server never touches a device, so forking from it is safe on CUDA too.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["torch", "kd.models.modeling", "kd.data.tokenization", "kd.models.generation"])
    workers: dict[str, _Worker] = {}
    failed = True
    try:
        for name, path in models.items():
            workers[name] = _Worker(ctx, name, Path(path), list(articles), settings | {"beams": beams[name]})
        ready = {}
        loading = {w.conn: w for w in workers.values()}
        while loading:  # in the order they finish loading, so a model that fails to load fails at once
            for conn in wait_for_any(list(loading)):
                w = loading.pop(conn)
                ready[w.name] = w.ask(None, "ready")
        log.info("speed: %d models loaded; %d rounds over %d articles", len(workers), repeats, len(articles))
        round_s: dict[tuple[str, int], list[float]] = {(name, b): [] for name in workers for b in beams[name]}
        position: dict[str, list[int]] = {name: [] for name in workers}
        for r, order in enumerate(round_orders(list(workers), repeats)):
            for place, name in enumerate(order):
                for b in beams[name]:
                    round_s[name, b].append(workers[name].ask(("time", b), "time"))
                position[name].append(place)
            log.info("speed: round %d: %s", r + 1,
                     {f"{name}" + ("" if b == num_beams else " greedy"): round(s[-1], 3)
                      for (name, b), s in round_s.items()})
        peaks = {name: w.ask("stop", "stopped")["peak_mem_mb"] for name, w in workers.items()}
        failed = False
    finally:
        for w in workers.values():
            w.close(now=failed)
    first = ready[next(iter(workers))]
    result: dict = {"host": host_info(device=device, torch_threads=first["torch_threads"], n_samples=len(articles),
                                      rounds=repeats)}
    for name in workers:
        times = round_s[name, num_beams]
        result[name] = {**speed_of(times, len(articles)), "peak_mem_mb": round(peaks[name], DIGITS),
                        "round_s": [round(s, 6) for s in times], "round_position": position[name],
                        "num_beams": num_beams}
        if len(beams[name]) > 1:
            result[name]["greedy"] = {**speed_of(round_s[name, 1], len(articles)),
                                      "round_s": [round(s, 6) for s in round_s[name, 1]]}
    return result
