"""Stage download: write data/raw/{train,validation,test}.jsonl from the configured source."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--out", type=Path, default=paths.RAW_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("download", args.log_dir)
    data = load_section("data", args.params)
    cli.log_config(data=data)

    from kd.data.prepare import load_splits, write_splits

    # Streamed and validated record by record; the files are renamed into place only once every split passed.
    counts = write_splits(load_splits(data), args.out)
    cli.log.info("wrote %s", counts)


if __name__ == "__main__":
    cli.run("download", main)
