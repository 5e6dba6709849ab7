"""A corpus of CNN/DailyMail's size and length statistics, assembled from real news sentences, for the
real-scale rehearsal (tools.rehearsal).

Sizes: 287,113 / 13,368 / 11,490 articles (CNN/DailyMail 3.0.0), times `scale`.
Lengths: See et al. (2017) report 781 tokens per article and 56 per summary on average, 3.75 highlight
sentences. Each article's target length is drawn from a lognormal with mean 781 words (sigma 0.5 in log
space: a right-skewed spread, standard deviation ~416 words, as news lengths are), each summary's from
a lognormal with mean 56 words (sigma 0.35). Words are whitespace words, a little fewer than See et al.'s
tokens (they count punctuation); either way most articles are longer than the 512 source tokens kept.

Text: the sentences of the real sample in ../shared/data/cnn_dailymail (645 article/highlights pairs). An
article starts with a random sample article's sentences in order (so lead-3 looks like news) and goes on
with the sentences of further random sample articles, taking the number of sentences whose word count is
nearest the target. Its summary starts with that first sample article's highlights and goes on with random
highlight sentences the same way. Without the sample, the builtin generated corpus (kd.data.builtin)
supplies the sentences. Deterministic for a seed; written as JSON lines, one split streaming at a time.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np

CNNDM_SIZES = {"train": 287_113, "validation": 13_368, "test": 11_490}
ARTICLE_WORDS, ARTICLE_SIGMA = 781.0, 0.5
SUMMARY_WORDS, SUMMARY_SIGMA = 56.0, 0.35
HIGHLIGHT_SENTENCES = 3.75  # See et al.'s mean, for comparison with what the corpus gets
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[\"'‘“A-Z0-9(])")

Doc = tuple[tuple[str, int], ...]  # (sentence, its word count) in order


@dataclass(frozen=True)
class SentencePool:
    """Sentences to assemble from: per source document, its article's and its highlights' sentences."""

    articles: tuple[Doc, ...]
    highlights: tuple[Doc, ...]
    source: str  # where the text comes from, for the report

    @staticmethod
    def from_records(records: Iterable[dict], source: str) -> "SentencePool":
        pairs = [(_doc(split_sentences(r["article"])), _doc(r["highlights"].split("\n"))) for r in records]
        pairs = [(a, h) for a, h in pairs if a and h]
        if not pairs:
            raise ValueError(f"{source}: no article with both sentences and highlights")
        return SentencePool(tuple(a for a, _ in pairs), tuple(h for _, h in pairs), source)


def _doc(sentences: Iterable[str]) -> Doc:
    return tuple((s, len(s.split())) for s in (t.strip() for t in sentences) if s)


def split_sentences(text: str) -> list[str]:
    """Sentences of a news article: split after . ! ? followed by space and a capital, digit or quote."""
    return [s for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()]


def load_pool(sample_dir: Path | None) -> SentencePool:
    """The real sample's sentences (all three splits), or the builtin corpus' when the sample is absent."""
    from kd.data.sources import SPLITS, read_jsonl

    if sample_dir is not None and all((Path(sample_dir) / f"{s}.jsonl").is_file() for s in SPLITS):
        records = [r for s in SPLITS for r in read_jsonl(Path(sample_dir) / f"{s}.jsonl")]
        return SentencePool.from_records(records, f"{sample_dir} ({len(records)} pairs)")
    from kd.data.builtin import generate

    return SentencePool.from_records(generate("train", 400, 0), "builtin corpus (kd.data.builtin, 400 records)")


def scaled_sizes(scale: float, minimum: int = 1) -> dict[str, int]:
    """CNN/DailyMail's split sizes times `scale`, each at least `minimum`."""
    return {s: max(minimum, round(n * scale)) for s, n in CNNDM_SIZES.items()}


def lognormal_lengths(rng: np.random.Generator, mean: float, sigma: float, n: int) -> np.ndarray:
    """`n` lengths from a lognormal whose mean is `mean` (mu = ln(mean) - sigma^2 / 2), at least 1."""
    return np.maximum(1.0, rng.lognormal(np.log(mean) - sigma**2 / 2, sigma, n))


def take_nearest(pieces: Iterator[tuple[str, int]], target: float) -> list[str]:
    """Leading pieces (text, words) whose total word count is nearest `target`; at least one. Stopping
    at the nearest total, not the first past the target, keeps the mean length on target."""
    out: list[str] = []
    total = 0
    for text, words in pieces:
        if out and abs(total + words - target) >= abs(total - target):
            break
        out.append(text)
        total += words
    return out


def _chain(rng: np.random.Generator, docs: tuple[Doc, ...], first: int) -> Iterator[tuple[str, int]]:
    """Document `first`'s pieces, then those of random documents, without end."""
    yield from docs[first]
    while True:
        yield from docs[int(rng.integers(len(docs)))]


def generate_split(pool: SentencePool, split: str, n: int, seed: int) -> Iterator[dict]:
    """`n` records {"id", "article", "highlights"} for `split`, deterministic for (seed, split); every
    draw is made record by record, so a smaller corpus is the start of a larger one."""
    rng = np.random.default_rng([seed, list(CNNDM_SIZES).index(split)])
    for i in range(n):
        article_words, summary_words = (lognormal_lengths(rng, mean, sigma, 1)[0] for mean, sigma in
                                        ((ARTICLE_WORDS, ARTICLE_SIGMA), (SUMMARY_WORDS, SUMMARY_SIGMA)))
        first = int(rng.integers(len(pool.articles)))
        article = take_nearest(_chain(rng, pool.articles, first), article_words)
        highlights = take_nearest(_chain(rng, pool.highlights, first), summary_words)
        yield {"id": f"rehearsal-{split}-{i:06d}", "article": " ".join(article), "highlights": "\n".join(highlights)}


@dataclass
class LengthStats:
    """Running means of what a split's records hold."""

    n: int = 0
    article_words: int = 0
    summary_words: int = 0
    summary_sentences: int = 0

    def add(self, record: dict) -> dict:
        self.n += 1
        self.article_words += len(record["article"].split())
        self.summary_words += len(record["highlights"].split())
        self.summary_sentences += record["highlights"].count("\n") + 1
        return record

    def summary(self) -> dict:
        n = max(self.n, 1)
        return {"articles": self.n, "mean_article_words": round(self.article_words / n, 1),
                "mean_summary_words": round(self.summary_words / n, 1),
                "mean_highlight_sentences": round(self.summary_sentences / n, 2)}


def write_corpus(out_dir: Path, pool: SentencePool, sizes: dict[str, int], seed: int) -> dict:
    """{split}.jsonl in `out_dir` (a local dataset directory `datasets.load_dataset` reads, each file
    written atomically, streaming); returns each split's length statistics and the text's source."""
    from kd.data.sources import write_jsonl_atomic

    stats = {}
    for split, n in sizes.items():
        running = LengthStats()
        write_jsonl_atomic((running.add(r) for r in generate_split(pool, split, n, seed)),
                           Path(out_dir) / f"{split}.jsonl")
        stats[split] = running.summary()
    return {"text_source": pool.source, "splits": stats,
            "targets": {"mean_article_words": ARTICLE_WORDS, "article_sigma": ARTICLE_SIGMA,
                        "mean_summary_words": SUMMARY_WORDS, "summary_sigma": SUMMARY_SIGMA,
                        "mean_highlight_sentences": HIGHLIGHT_SENTENCES}}
