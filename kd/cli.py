"""What every stage script shares: argv parsing basics, logging to logs/<stage>.log, and turning a
ConfigError into one clear message and a non-zero exit."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Callable, Sequence

from kd import paths
from kd.errors import ConfigError

log = logging.getLogger("kd")
LOG_DIR_ENV = "KD_LOG_DIR"


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description,
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--params", type=Path, default=paths.PARAMS_FILE, help="params file")
    # KD_LOG_DIR: where a run outside the workspace (`python -m kd.profile NAME --exp`, a DVC experiment in a
    # temporary directory) keeps its logs, since logs/ is not an output and the temporary directory goes.
    p.add_argument("--log-dir", type=Path, default=Path(os.environ.get(LOG_DIR_ENV) or paths.LOGS_DIR),
                   help=f"where <stage>.log goes (${LOG_DIR_ENV} when set)")
    return p


def is_main_process() -> bool:
    """True unless a distributed launcher (`accelerate launch`, torchrun) started this as rank > 0."""
    return int(os.environ.get("RANK", "0")) == 0


def setup_logging(stage: str, log_dir: Path) -> None:
    """INFO to logs/<stage>.log and stderr. Under a distributed launcher (`accelerate launch`) only
    the main process (RANK 0) writes the log file; the others print warnings and errors only."""
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
    err = logging.StreamHandler(sys.stderr)
    err.setFormatter(fmt)
    root = logging.getLogger()
    root.handlers[:] = [err]
    root.setLevel(logging.INFO)
    if not is_main_process():
        root.setLevel(logging.WARNING)
    else:
        log_dir.mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(log_dir / f"{stage}.log", mode="w")
        file_handler.setFormatter(fmt)
        root.handlers.append(file_handler)
    for noisy in ("httpx", "urllib3", "filelock", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # Which checkout's code runs: `dvc exp run --temp` and queued runs work in copies of the repository.
    log.info("code: %s", Path(__file__).resolve().parent)


def set_threads(threads: int) -> None:
    """torch's intra-op thread count for this process (`train.threads`): the same count gives the same
    float sums in the same order, so a model trains to the same weights; another count does not."""
    import torch

    torch.set_num_threads(threads)
    log.info("torch threads: %d", threads)


@contextlib.contextmanager
def cost_summary(path: Path):
    """Times the block and writes {"seconds", "threads"} to `path` (a stage's cost, e.g.
    dvclive/teacher_generate/metrics.json), atomically, when the block succeeds. The report charges it
    to the recipes that read the stage's output. Kept beside its output, not in it, so the output's
    bytes (and md5) do not depend on how long a run took."""
    import torch

    from kd.io import atomic_write_json

    start = time.perf_counter()
    yield
    if is_main_process():
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(Path(path), {"seconds": round(time.perf_counter() - start, 1),
                                       "threads": torch.get_num_threads()})


def log_config(**sections) -> None:
    """The effective configuration, logged once at start."""
    flat = {k: dataclasses.asdict(v) if dataclasses.is_dataclass(v) else v for k, v in sections.items()}
    log.info("config: %s", json.dumps(flat, default=str, sort_keys=True))


def run(stage: str, main: Callable[[Sequence[str] | None], None], argv: Sequence[str] | None = None) -> None:
    """Run a stage's main; bad input ends with `error: <message>` and exit status 2."""
    try:
        main(argv)
    except ConfigError as e:
        if logging.getLogger().handlers:  # the stderr handler prints it, the file keeps it
            log.error("error: %s", e)
        else:
            print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
