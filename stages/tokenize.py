"""Stage tokenize: build the tokenizer and tokenize every split."""

from __future__ import annotations

import sys
from pathlib import Path

# The repo root replaces stages/ on the path: run from anywhere, and stages/tokenize.py must not
# shadow the stdlib module of the same name.
sys.path[0] = str(Path(__file__).resolve().parents[1])

from kd import cli, paths  # noqa: E402
from kd.params import load_section  # noqa: E402


def main(argv=None) -> None:
    p = cli.parser(__doc__)
    p.add_argument("--raw", type=Path, default=paths.RAW_DIR)
    p.add_argument("--tokenizer-out", type=Path, default=paths.TOKENIZER_DIR)
    p.add_argument("--tokenized-out", type=Path, default=paths.TOKENIZED_DIR)
    args = p.parse_args(argv)
    cli.setup_logging("tokenize", args.log_dir)
    tok = load_section("tokenizer", args.params)
    # A pretrained teacher brings its tokenizer; models built from config get one trained here.
    pretrained = load_section("teacher", args.params).pretrained
    cli.log_config(tokenizer=tok, teacher_pretrained=pretrained)

    from kd.tokenization import prepare_tokenized

    sizes = prepare_tokenized(raw_dir=args.raw, tokenizer_out=args.tokenizer_out,
                              tokenized_out=args.tokenized_out, params=tok, pretrained=pretrained)
    cli.log.info("tokenized: %s", sizes)


if __name__ == "__main__":
    cli.run("tokenize", main)
