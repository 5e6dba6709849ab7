"""Stage tokenize: build the tokenizer and tokenize every split."""

from __future__ import annotations

from pathlib import Path

from kd import cli, paths
from kd.params import load_section


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

    from kd.data.tokenization import prepare_tokenized

    sizes = prepare_tokenized(raw_dir=args.raw, tokenizer_out=args.tokenizer_out,
                              tokenized_out=args.tokenized_out, params=tok, pretrained=pretrained)
    cli.log.info("tokenized: %s", sizes)


if __name__ == "__main__":
    cli.run("tokenize", main)
