"""Where a model's names and numbers come from: the article's event, elsewhere in the article, or nowhere.

    python -m kd.mentions --rev HEAD teacher seqkd          # validation split, beam decoding
    python -m kd.mentions --rev <exp sha> teacher --split test

`fact_precision` (kd.metrics.faithfulness) is one number per summary. When it is low, the first question is
whether the model picks the wrong fact from the article (a distractor's name, a detail's number) or
does not copy at all and writes a plausible value of its own, and whether names and numbers fail alike.
This tallies every distinct mention of every summary in the committed examples
(`benchmark_results/examples/<model>.jsonl` at `--rev`) by kind and source, using the same mentions and
support rules as `fact_precision`:

    kind:   number (its first token is a number) | name
    source: event    - inside one of the article's event values (what fact_precision counts as right)
            article  - not an event value, but the article states it (a distractor or a detail)
            invented - the article does not state it

The articles and their facts come from the raw split (`--raw`, default data/raw, the workspace's): a
summary whose id is not there is an error, since the tally would otherwise describe other articles.
Builtin corpora only: records without `facts` carry no event to compare with.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from kd import paths
from kd.errors import ConfigError
from kd.metrics.faithfulness import distinct, mentions, supported, texts_ngrams

KINDS = ("name", "number")
SOURCES = ("event", "article", "invented")


def classify(summary: str, article: str, facts: Mapping) -> list[tuple[str, str]]:
    """(kind, source) of each distinct mention of `summary`, in order of first statement."""
    found = distinct(mentions(summary))
    if not found:
        return []
    max_n = max(len(m) for m in found)
    event, source = texts_ngrams(facts["event"].values(), max_n), texts_ngrams([article], max_n)
    out = []
    for mention in found:
        kind = "number" if mention[0][0].isdigit() else "name"
        where = "event" if supported(mention, event) else "article" if supported(mention, source) else "invented"
        out.append((kind, where))
    return out


def tally(examples: Iterable[Mapping], records: Mapping[str, Mapping]) -> Counter:
    """Counter of (kind, source) over `examples` (rows with "id" and "prediction"); `records` maps each
    id to its raw record (article, facts)."""
    counts: Counter = Counter()
    for example in examples:
        record = records.get(example["id"])
        if record is None:
            raise ConfigError(f"summary {example['id']!r} has no article in the raw split (--raw)")
        if "facts" not in record:
            raise ConfigError(f"record {example['id']!r} carries no facts: kd.mentions needs the builtin corpus")
        counts.update(classify(example["prediction"], record["article"], record["facts"]))
    return counts


def markdown(per_model: Mapping[str, Counter]) -> str:
    """One row per model: each (kind, source) count with its share of that kind's mentions."""
    head = [f"{kind} {source}" for kind in KINDS for source in SOURCES]
    lines = ["| model | " + " | ".join(head) + " |", "|---|" + "---:|" * len(head)]
    for model, counts in per_model.items():
        cells = []
        for kind in KINDS:
            total = sum(counts[kind, s] for s in SOURCES)
            cells += [f"{counts[kind, s]} ({100 * counts[kind, s] / total:.0f}%)" if total else "0"
                      for s in SOURCES]
        lines.append(f"| {model} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def read_examples(rev: str, model: str, split: str, decoding: str, repo: Path = Path(".")) -> list[dict]:
    from kd.evaluation.examples import examples_file, read_committed

    path = examples_file(model).as_posix()
    rows = read_committed(repo, rev, model)[model]
    # A baseline without a model (lead-3) has one decoding of its own, whatever `decoding` asks for.
    decodings = {r.get("decoding") for r in rows if r.get("split") == split}
    wanted = decoding if len(decodings) != 1 or decodings & {"beam", "greedy"} else decodings.pop()
    chosen = [r for r in rows if r.get("split") == split and r.get("decoding") == wanted]
    if not chosen:
        raise ConfigError(f"{rev}:{path} has no {split} examples decoded with {decoding}")
    return chosen


def read_records(raw_dir: Path, split: str) -> dict[str, dict]:
    path = paths.raw_split(split, raw_dir)
    if not path.is_file():
        raise ConfigError(f"{path} not found: run `dvc repro download` or pass --raw")
    from kd.jsonl import read_jsonl

    return {record["id"]: record for record in read_jsonl(path)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kd.mentions", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="model names, as in benchmark_results/examples/")
    parser.add_argument("--rev", default="HEAD", help="commit or experiment whose examples to read")
    parser.add_argument("--split", default="validation", choices=("validation", "test"))
    parser.add_argument("--decoding", default="beam", choices=("beam", "greedy"))
    parser.add_argument("--raw", type=Path, default=paths.RAW_DIR, help="the raw splits the examples came from")
    args = parser.parse_args(argv)
    records = read_records(args.raw, args.split)
    per_model = {m: tally(read_examples(args.rev, m, args.split, args.decoding), records) for m in args.models}
    print(f"{args.rev} · {args.split} · {args.decoding}: distinct mentions per summary, summed\n")
    print(markdown(per_model), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
