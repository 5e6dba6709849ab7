"""Summarize your own text with a trained model, decoding as the benchmark does.

    python -m kd.summarize --model models/student_attention articles.jsonl --out summaries.jsonl
    python -m kd.summarize --model models/teacher articles.txt > summaries.txt

Input: JSON lines (`.jsonl`, `.jsonl.gz`) with an `article` field (`--article-field`) and, kept when
present, an `id`; output is one `{"id", "summary"}` object per line, ids defaulting to the line number.
Any other file is plain text, one article per line; output is one summary per line, line for line
(a blank input line gives a blank output line).

Decoding settings come from params.yaml, as the benchmark reads them: `benchmark.num_beams`,
`max_new_tokens`, `batch_size`, `device` and `tokenizer.prefix`, `max_source_length`; `--num-beams`
and `--max-new-tokens` override. Bad input ends with one `error: ...` line and exit status 2, and
nothing is written.

Serving a student on a CPU: `--num-beams 1` decodes greedily (how the report's served rows are
timed), `--int8` quantizes the linear layers to int8 (2.6-2.8x faster than fp32 at t5-small and t5-base
shapes, docs/serving.md), `--threads N` sets torch's CPU threads.

    python -m kd.summarize --model models/student_seqkd --num-beams 1 --int8 --threads 2 articles.txt
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from kd.errors import ConfigError

JSONL_SUFFIXES = (".jsonl", ".jsonl.gz")


@dataclass(frozen=True)
class Articles:
    """What to summarize: the texts, and for JSON lines input the id of each (None for text input)."""

    texts: list[str]
    ids: list[str] | None
    blank: frozenset[int] = frozenset()  # text input: indices of blank lines (not summarized)


def read_articles(path: Path, *, article_field: str = "article", id_field: str = "id") -> Articles:
    """JSON lines (by suffix) or plain text; errors name the file and line."""
    if not path.is_file():
        raise ConfigError(f"{path}: input file not found")
    if path.name.endswith(JSONL_SUFFIXES):
        return _read_jsonl(path, article_field, id_field)
    return _read_text(path)


def _read_jsonl(path: Path, article_field: str, id_field: str) -> Articles:
    from kd.data.sources import check_unique_ids, record_id
    from kd.jsonl import iter_jsonl

    texts, ids, lines = [], [], []
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if article_field not in obj:
            raise ConfigError(f"{where}: record missing {article_field!r} (choose the field with --article-field)")
        article = obj[article_field]
        if not isinstance(article, str) or not article.strip():
            raise ConfigError(f"{where}: {article_field!r} must be a non-empty string, got {article!r:.40}")
        texts.append(article)
        ids.append(record_id(obj, id_field, where, default=str(lineno)))
        lines.append(lineno)
    if not texts:
        raise ConfigError(f"{path}: no articles (empty input)")
    check_unique_ids(ids, where=str(path), lines=lines)  # the output is keyed on them
    return Articles(texts=texts, ids=ids)


def _read_text(path: Path) -> Articles:
    data = path.read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        raise ConfigError(f"{path}:{line}: not UTF-8 text (byte {data[e.start]:#04x}); "
                          "save the file as UTF-8") from None
    # Lines end at "\n" (or "\r\n") only: str.splitlines would also split an article at U+2028 and friends.
    lines = [line.removesuffix("\r") for line in text.split("\n")]
    if lines[-1] == "":
        lines.pop()
    blank = frozenset(i for i, line in enumerate(lines) if not line.strip())
    if len(blank) == len(lines):
        raise ConfigError(f"{path}: no articles (empty input)")
    return Articles(texts=lines, ids=None, blank=blank)


def format_output(articles: Articles, summaries: list[str]) -> str:
    """JSON lines {"id", "summary"} for JSON lines input, else one summary per input line."""
    if articles.ids is not None:
        return "".join(json.dumps({"id": i, "summary": s}, ensure_ascii=False) + "\n"
                       for i, s in zip(articles.ids, summaries))
    # A summary never spans lines, so output line i belongs to input line i.
    return "".join(" ".join(s.split()) + "\n" for s in summaries)


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    from kd import paths

    p = argparse.ArgumentParser(prog="python -m kd.summarize", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("input", type=Path, help="articles: .jsonl / .jsonl.gz, or text with one article per line")
    p.add_argument("--model", type=Path, required=True, help="a trained model directory, e.g. models/teacher")
    p.add_argument("--out", type=Path, default=None, help="output file, written atomically (default: stdout)")
    p.add_argument("--params", type=Path, default=paths.PARAMS_FILE,
                   help="params file with the benchmark's decoding settings (default: %(default)s)")
    p.add_argument("--article-field", default="article", help="JSON lines: the field holding the article")
    p.add_argument("--num-beams", type=_positive, default=None, help="default: benchmark.num_beams")
    p.add_argument("--max-new-tokens", type=_positive, default=None, help="default: benchmark.max_new_tokens")
    p.add_argument("--int8", action="store_true",
                   help="CPU only: int8 linear layers (torch dynamic quantization), faster at real sizes")
    p.add_argument("--threads", type=_positive, default=None, help="torch CPU threads (default: torch's choice)")
    return p


def main(argv: Sequence[str] | None = None) -> None:
    from kd.params import load_section

    args = parser().parse_args(argv)
    bench, tok = load_section("benchmark", args.params), load_section("tokenizer", args.params)
    num_beams = args.num_beams or bench.num_beams
    max_new_tokens = args.max_new_tokens or bench.max_new_tokens
    articles = read_articles(args.input, article_field=args.article_field)
    if not (args.model / "config.json").is_file():
        raise ConfigError(f"{args.model}: no trained model here (no config.json)")
    if args.out is not None and args.out.is_dir():
        raise ConfigError(f"--out {args.out}: is a directory; give a file name")

    from kd.models.generation import generate_all, load_summarizer  # heavy imports only after the input is valid
    from kd.io import atomic_write_text
    from kd.models.modeling import resolve_device

    device = resolve_device(bench.device)
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    # what the benchmark scores, loaded the same way (int8: a ConfigError on a GPU)
    model, tokenizer = load_summarizer(args.model, device, int8=args.int8)
    todo = [i for i in range(len(articles.texts)) if i not in articles.blank]
    print(f"summarizing {len(todo)} article(s) with {args.model} on {device}{' in int8' if args.int8 else ''}: "
          f"num_beams {num_beams}, max_new_tokens {max_new_tokens}, batch_size {bench.batch_size}", file=sys.stderr)
    progress = ((lambda done, total: print(f"  {done}/{total}", file=sys.stderr, flush=True))
                if len(todo) > bench.batch_size else None)
    generated = generate_all(model, tokenizer, [articles.texts[i] for i in todo], batch_size=bench.batch_size,
                             prefix=tok.prefix, max_source_length=tok.max_source_length, num_beams=num_beams,
                             max_new_tokens=max_new_tokens, device=device, progress=progress)
    summaries = [""] * len(articles.texts)
    for i, summary in zip(todo, generated):
        summaries[i] = summary
    text = format_output(articles, summaries)
    if args.out is None:
        sys.stdout.write(text)
    else:
        atomic_write_text(args.out, text)
        print(f"wrote {len(todo)} summaries to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    from kd import cli

    cli.run("summarize", main)  # bad input: one `error: ...` line, exit status 2
