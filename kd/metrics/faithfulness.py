"""Per-example faithfulness and shape metrics for a summary, needing no model.

ROUGE rewards overlap with the reference; it does not notice a summary that names the wrong person or
invents a number. These metrics look at the names and numbers a summary states and ask whether its
source states them too. Everything is plain Python (regexes and sets), so a whole test split scores in
seconds on a CPU. Each function scores ONE example; macro-averaging over a split is the caller's job.
Percentages are on ROUGE's 0-100 scale.

Definitions
-----------
Tokens. A text's normalised tokens are its words and numbers in order; punctuation, "%", "$" and other
symbols are dropped. A word is a run of letters, with inner apostrophes ("O'Brien"); it is lowercased, "’"
becomes "'", and a possessive "'s" (or a final "'") is stripped, so "Okafor's" -> "okafor". Hyphens split
words ("5-day" -> "5", "day"). A number is a run of digits with inner "," or "." ("2,000", "4.50"); all commas
are stripped (thousands separators; a decimal comma is not recognised) and trailing zeros after a decimal
point are stripped, with the point if nothing follows it: "2,000" -> "2000", "4.50" -> "4.5", "3.0" -> "3".
Number words ("five") are words, not numbers.

Mentions. The names and numbers a text states, found sentence by sentence (`kd.metrics.rouge.split_sentences`):
- every number token is a mention of one token. Units are not part of it and are never compared: "68%",
  "68 percent" and "68 per cent" all state "68", "$20 million" states "20", "5-day" states "5";
- a name is a maximal run of capitalised word tokens (first letter upper case) inside one sentence, joined
  only by spaces, a hyphen or a period straight after a token ("Cape Town", "Jean-Paul Sartre", "John F.
  Kennedy", "U.S. Army"). Any other punctuation ends the run, a possessive ends it after its token
  ("Okafor's Bank" states "okafor" and "bank"), and lower-case joiners are not bridged ("University of
  Lisbon" states "university" and "lisbon");
- a sentence opener is the first token of a sentence, or a word straight after an opening quote. A capital
  there says nothing, so a run of ONE token at an opener is not a mention ("The deal ...", "Profit at
  Northgate Bank rose" states only "northgate bank"). A longer run at an opener is kept, marked
  `opens_sentence`, because its first token may be a common word ("Judge Ana Ruiz fines ...", "New Nova 3
  ..."). The cost: a one-word name that opens a sentence ("Lisbon elects ...") is never checked.

Support. A mention is supported by a text when its tokens occur contiguously in the text's normalised
tokens (punctuation between them in the text is ignored). A mention marked `opens_sentence` is also
supported when its tokens without the first one are ("Judge Ana Ruiz" is supported by "Ana Ruiz, the
judge, said ..."). A summary's mentions are counted once each: a mention stated twice counts once, and it
counts as opening a sentence only if every statement of it does.

entity_precision(summary, source): 100 x (supported distinct mentions of the summary) / (distinct mentions
of the summary). A summary stating no name or number, the empty summary included, scores 100: it stated
nothing unsupported. Empty or vague summaries are caught by fact_recall and ROUGE, not by this metric.

fact_recall(summary, facts): for records that carry their facts (the builtin corpus, `kd.data.builtin`):
100 x (facts in facts["reference"] whose tokens occur contiguously in the summary's tokens) / (number of
reference facts). A fact whose first token is a number is a number fact and matches by that number alone
("$20 million" matches "20", as units are not compared). Facts without any token are skipped; no facts
left scores 100.

fact_precision(summary, facts): like entity_precision, but the supporting texts are the article's event
values (facts["event"], slot -> value), each value a text of its own (a mention must fit inside one
value). A name or number the article states only in a distractor sentence, or nowhere, counts against;
a distractor value that equals an event value (a common number, say) is supported. No mentions scores 100.

novel_bigram_pct(summary, source): 100 x (bigram occurrences of the summary not among the source's
bigrams) / (bigram occurrences of the summary), on `re.findall(r"\\w+", text.lower())` tokens (bigrams may
cross sentence boundaries). A summary without a bigram scores 0. High values mean abstraction, or invention.

repeated_trigram_pct(summary): 100 x (trigram occurrences of the summary equal to an earlier trigram of
the same summary) / (trigram occurrences), on the same tokens; none scores 0. Catches degenerate loops.

length (summary_length): the number of those tokens in the summary.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence

from kd.metrics.rouge import split_sentences

# A number (digits with inner , or .) or a word (letters with inner apostrophes); everything else is dropped.
_TOKEN = re.compile(r"(?P<number>\d+(?:[.,]\d+)*)|(?P<word>[^\W\d_]+(?:['\u2019][^\W\d_]+)*['\u2019]?)")
# What may sit between two tokens of one name: spaces, a hyphen, or a period straight after the first
# token (an initial or an abbreviation, possibly followed by spaces).
_NAME_GAP = re.compile(r"\s+|-|\.\s*")
# A gap ending in an opening quote: the next word opens a (quoted) sentence.
_OPENING_QUOTE = re.compile(r"(?:^|[\s(\[:])[\"\u201c\u2018']$")
_POSSESSIVE = re.compile(r"'s$|'$")
_WORDS = re.compile(r"\w+")


class Mention(tuple):
    """The normalised tokens of one stated name or number; equal to the plain tuple of its tokens.

    `opens_sentence` marks a name run that starts at a sentence opener, whose first token may be a
    common word ("Judge", "New") and may therefore be dropped when matching.
    """

    opens_sentence: bool

    def __new__(cls, tokens: Iterable[str], opens_sentence: bool = False) -> "Mention":
        self = super().__new__(cls, tokens)
        self.opens_sentence = opens_sentence
        return self

    def __repr__(self) -> str:
        return f"Mention({tuple(self)!r}, opens_sentence={self.opens_sentence})"


def _normalise_number(raw: str) -> str:
    number = raw.replace(",", "")
    if "." in number:
        number = number.rstrip("0").rstrip(".")
    return number


def _normalise_word(raw: str) -> tuple[str, bool]:
    """(lowercased word without a possessive, whether it had one)."""
    word = raw.replace("\u2019", "'")
    stripped = _POSSESSIVE.sub("", word)
    return stripped.lower(), stripped != word


def tokens(text: str) -> list[str]:
    """The normalised tokens of `text` (see the module docstring): what mentions are looked up in."""
    out = []
    for match in _TOKEN.finditer(text):
        if match.group("number"):
            out.append(_normalise_number(match.group("number")))
        else:
            out.append(_normalise_word(match.group("word"))[0])
    return [token for token in out if token]


def _sentence_mentions(sentence: str) -> list[Mention]:
    """Mentions of one sentence, in order; name runs are closed by any token that cannot extend them."""
    found: list[Mention] = []
    run: list[str] = []
    run_opens = False
    previous_end, previous_possessive = 0, False

    def close() -> None:
        if len(run) > 1 or (run and not run_opens):
            found.append(Mention(run, opens_sentence=run_opens))

    for index, match in enumerate(_TOKEN.finditer(sentence)):
        gap = sentence[previous_end:match.start()]
        opener = index == 0 or bool(_OPENING_QUOTE.search(gap))
        word = match.group("word")
        if word is None:
            close()
            run, previous_possessive = [], False
            found.append(Mention([_normalise_number(match.group("number"))]))
        else:
            token, possessive = _normalise_word(word)
            capitalised = word[0].isupper() and bool(token)
            joins = run and not previous_possessive and not opener and _NAME_GAP.fullmatch(gap)
            if not (capitalised and joins):
                close()
                run, run_opens = [], opener
            if capitalised:
                run.append(token)
            previous_possessive = possessive
        previous_end = match.end()
    close()
    return found


def mentions(text: str) -> list[tuple[str, ...]]:
    """The names and numbers `text` states, in order, each a `Mention` (a tuple of normalised tokens).

    Repeats are kept; the scores count distinct mentions.
    """
    return [mention for sentence in split_sentences(text) for mention in _sentence_mentions(sentence)]


def distinct(found: Iterable[Mention]) -> list[Mention]:
    """One mention per token tuple; it opens a sentence only if every statement of it does."""
    opens: dict[tuple[str, ...], bool] = {}
    for mention in found:
        opens[tuple(mention)] = opens.get(tuple(mention), True) and mention.opens_sentence
    return [Mention(key, opens_sentence=value) for key, value in opens.items()]


def ngram_set(text_tokens: Sequence[str], max_n: int) -> set[tuple[str, ...]]:
    """Every contiguous run of 1..`max_n` tokens, so that a mention's support is one set lookup."""
    return {tuple(text_tokens[i:i + n]) for n in range(1, max_n + 1) for i in range(len(text_tokens) - n + 1)}


def texts_ngrams(texts: Iterable[str], max_n: int) -> set[tuple[str, ...]]:
    """The union of each text's own `ngram_set`: a mention is supported only if it fits inside one text."""
    grams: set[tuple[str, ...]] = set()
    for text in texts:
        grams |= ngram_set(tokens(text), max_n)
    return grams


def supported(mention: tuple[str, ...], grams: set[tuple[str, ...]]) -> bool:
    """Whether `mention` occurs contiguously in the text whose `ngram_set` is `grams` (built with a
    `max_n` of at least its length); a sentence-opening run may also match without its first token."""
    if tuple(mention) in grams:
        return True
    return getattr(mention, "opens_sentence", False) and len(mention) > 1 and tuple(mention[1:]) in grams


def _precision(found: list[Mention], texts: Iterable[str]) -> float:
    """Percent of the distinct `found` mentions supported by at least one of `texts` (100 if none)."""
    unique = distinct(found)
    if not unique:
        return 100.0
    grams = texts_ngrams(texts, max(len(mention) for mention in unique))
    return 100.0 * sum(supported(mention, grams) for mention in unique) / len(unique)


def entity_precision(summary: str, source: str) -> float:
    """Percent of the summary's distinct names and numbers that its source states too (100 if none)."""
    return _precision(mentions(summary), [source])


def _fact_tokens(fact: str) -> tuple[str, ...]:
    """A fact's tokens as matched: a number fact ("$20 million") by its number alone."""
    fact_tokens = tokens(fact)
    if fact_tokens and fact_tokens[0][0].isdigit():
        return tuple(fact_tokens[:1])
    return tuple(fact_tokens)


def fact_recall(summary: str, facts: Mapping) -> float:
    """Percent of the reference's facts (`facts["reference"]`) that the summary states (100 if none)."""
    wanted = [fact for fact in map(_fact_tokens, facts["reference"]) if fact]
    if not wanted:
        return 100.0
    grams = ngram_set(tokens(summary), max(len(fact) for fact in wanted))
    return 100.0 * sum(fact in grams for fact in wanted) / len(wanted)


def fact_precision(summary: str, facts: Mapping) -> float:
    """Percent of the summary's distinct names and numbers that are values of the article's event
    (`facts["event"]`), not a distractor's or invented ones (100 if none)."""
    return _precision(mentions(summary), facts["event"].values())


def _words(text: str) -> list[str]:
    return _WORDS.findall(text.lower())


def _grams(words: Sequence[str], n: int) -> list[tuple[str, ...]]:
    return [tuple(words[i:i + n]) for i in range(len(words) - n + 1)]


def novel_bigram_pct(summary: str, source: str) -> float:
    """Percent of the summary's bigram occurrences that its source does not contain (0 if none)."""
    bigrams = _grams(_words(summary), 2)
    if not bigrams:
        return 0.0
    source_bigrams = set(_grams(_words(source), 2))
    return 100.0 * sum(bigram not in source_bigrams for bigram in bigrams) / len(bigrams)


def repeated_trigram_pct(summary: str) -> float:
    """Percent of the summary's trigram occurrences that repeat an earlier one of it (0 if none)."""
    trigrams = _grams(_words(summary), 3)
    if not trigrams:
        return 0.0
    return 100.0 * (len(trigrams) - len(set(trigrams))) / len(trigrams)


def summary_length(summary: str) -> int:
    """The summary's length in word tokens (`\\w+` runs)."""
    return len(_words(summary))


def example_scores(summary: str, source: str, facts: Mapping | None = None) -> dict[str, float]:
    """All metrics of one example; "fact_recall" and "fact_precision" only when its `facts` are known."""
    scores = {
        "entity_precision": entity_precision(summary, source),
        "novel_bigram_pct": novel_bigram_pct(summary, source),
        "repeated_trigram_pct": repeated_trigram_pct(summary),
        "length": float(summary_length(summary)),
    }
    if facts is not None:
        scores["fact_recall"] = fact_recall(summary, facts)
        scores["fact_precision"] = fact_precision(summary, facts)
    return scores

