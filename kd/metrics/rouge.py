"""ROUGE per example, and the text helpers it shares with the rest: sentence split, lead-n baseline.

Nothing here downloads data: sentences are split with a regex (nltk's punkt is not available offline).
"""

import re
from typing import Sequence

from rouge_score import rouge_scorer

ROUGE_KEYS = ("rouge1", "rouge2", "rougeL", "rougeLsum")

# A sentence ends at . ! or ? (optionally followed by a closing quote or bracket), then whitespace,
# then something that starts a sentence: a capital, a digit or an opening quote/bracket.
# Two fixed-width look-behinds because `re` does not allow a variable-width one.
_SENTENCE_BREAK = re.compile(
    r"(?:(?<=[.!?])|(?<=[.!?][\"'\u2019\u201d)\]]))\s+(?=[\"'\u2018\u201c(\[]?[A-Z0-9])"
)
# Titles that end in a period but do not end a sentence ("Mr. Smith").
_ABBREVIATIONS = frozenset(
    {"mr", "mrs", "ms", "dr", "prof", "st", "sr", "jr", "gen", "gov", "sen", "rep", "lt", "col", "sgt",
     "capt", "rev", "no", "vs", "mt", "ft", "inc", "co", "corp", "ltd"}
)
_LAST_WORD = re.compile(r"(\w+)\.$")
_WORD = re.compile(r"\w+|[^\w\s]")


def _ends_with_abbreviation(sentence: str) -> bool:
    match = _LAST_WORD.search(sentence)
    if match is None:
        return False
    word = match.group(1)
    # A lone capital is an initial ("John F. Kennedy", "U.S. officials").
    return word.lower() in _ABBREVIATIONS or (len(word) == 1 and word.isupper())


def split_sentences(text: str) -> list[str]:
    """Split `text` into sentences on newlines and on sentence-ending punctuation; strip, drop empties."""
    sentences: list[str] = []
    for line in text.splitlines():
        pending = ""
        for piece in _SENTENCE_BREAK.split(line):
            pending = f"{pending} {piece}" if pending else piece
            if not _ends_with_abbreviation(pending):
                sentences.append(pending.strip())
                pending = ""
        if pending:
            sentences.append(pending.strip())
    return [sentence for sentence in sentences if sentence]


def lead_n(article: str, n: int = 3) -> str:
    """The lead-n baseline: the first `n` sentences of `article`, one per line."""
    if n < 1:
        raise ValueError(f"lead_n: n must be >= 1, got {n}")
    return "\n".join(split_sentences(article)[:n])


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
    if len(predictions) != len(references):
        raise ValueError(
            f"{len(predictions)} predictions but {len(references)} references; they must pair up"
        )
    if not predictions:
        raise ValueError("no predictions to score")


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> list[dict[str, float]]:
    """ROUGE-1/2/L/Lsum F1 (x100) of each prediction against its reference, stemmed, as in the Hugging
    Face summarization example.

    Both sides are put one sentence per line first: rougeLsum splits on newlines, while the other
    three ignore them (the rouge tokenizer drops all non-alphanumerics), so one pass scores all four.
    """
    _check_pairs(predictions, references)
    scorer = rouge_scorer.RougeScorer(list(ROUGE_KEYS), use_stemmer=True)
    rows = []
    for prediction, reference in zip(predictions, references):
        scores = scorer.score(
            target="\n".join(split_sentences(reference)),
            prediction="\n".join(split_sentences(prediction)),
        )
        rows.append({key: 100.0 * scores[key].fmeasure for key in ROUGE_KEYS})
    return rows


def rouge_scores(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-1/2/L/Lsum F1 (x100) over the pairs (see rouge_per_example)."""
    rows = rouge_per_example(predictions, references)
    return {key: sum(row[key] for row in rows) / len(rows) for key in ROUGE_KEYS}
