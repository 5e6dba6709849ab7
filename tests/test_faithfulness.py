"""kd.metrics.faithfulness: exact expectations on hand-made summaries, and a sanity check on real CNN/DailyMail text."""

import json

import pytest

from conftest import SHARED_CNNDM
from kd.metrics.faithfulness import (
    Mention,
    entity_precision,
    example_scores,
    fact_precision,
    fact_recall,
    mentions,
    ngram_set,
    novel_bigram_pct,
    repeated_trigram_pct,
    summary_length,
    supported,
    texts_ngrams,
    tokens,
)
from kd.metrics.rouge import lead_n

FACTS = {
    "kind": "ruling",
    "event": {"judge": "Ana Ruiz", "company": "Marlow Foods", "fine": "$20 million", "city": "Cape Town",
              "days": "30"},
    "reference": ["Marlow Foods", "$20 million", "Cape Town"],
    "distractors": ["Omar Silva", "Lisbon", "12"],
}


def test_tokens_normalise_numbers_and_possessives():
    assert tokens("Okafor's firm paid $2,000.50, not 4.0 or 3.10%; a 5-day strike") == [
        "okafor", "firm", "paid", "2000.5", "not", "4", "or", "3.1", "a", "5", "day", "strike"]


def test_names_are_capitalised_runs():
    assert mentions("Floods hit Cape Town and John F. Kennedy airport, said Carla Okafor's lawyer.") == [
        ("cape", "town"), ("john", "f", "kennedy"), ("carla", "okafor")]
    # punctuation and lower-case joiners end a run; a possessive ends it after its token
    assert mentions("Rain in Lisbon, Oslo and the University of Lisbon hit Okafor's Marlow Foods.") == [
        ("lisbon",), ("oslo",), ("university",), ("lisbon",), ("okafor",), ("marlow", "foods")]


def test_sentence_openers_are_not_names_on_their_own():
    assert mentions("The deal is worth $20 million.") == [("20",)]
    assert mentions("Profit at Northgate Bank rose 5 percent.") == [("northgate", "bank"), ("5",)]
    assert mentions('He said: "The court was wrong."\nCourt fines firm.') == []
    judge = mentions("Judge Ana Ruiz fines Marlow Foods.")
    assert judge == [("judge", "ana", "ruiz"), ("marlow", "foods")]
    assert [m.opens_sentence for m in judge] == [True, False]
    assert repr(judge[0]) == "Mention(('judge', 'ana', 'ruiz'), opens_sentence=True)"


def test_numbers_are_mentions_without_their_units():
    assert mentions("Turnout was 68% and 2,000 homes got $4.50 each over a 5-day week.") == [
        ("68",), ("2000",), ("4.5",), ("5",)]


def test_supported_drops_only_an_opener_first_token():
    grams = ngram_set(tokens("Ana Ruiz, the judge, said so."), 3)
    assert supported(Mention(("judge", "ana", "ruiz"), opens_sentence=True), grams)
    assert not supported(Mention(("judge", "ana", "ruiz")), grams)
    assert not supported(("ruiz", "the", "judge", "said"), grams)  # longer than the n-grams built: no match
    assert supported(("ruiz", "the", "judge"), grams)  # punctuation between tokens is ignored


def test_entity_precision_exact_values():
    source = "Carla Okafor won 68 percent of the vote in Toronto, ahead of Grace Lindqvist. About 2000 voted."
    assert entity_precision("Carla Okafor wins in Toronto.", source) == 100.0
    # an invented name: 2 of 3 distinct mentions supported
    assert entity_precision("Carla Okafor beats Omar Silva in Toronto.", source) == pytest.approx(200 / 3)
    # an invented number: "54" is not stated
    assert entity_precision("Mayor Carla Okafor takes 54 percent.", source) == 50.0
    assert entity_precision("Mayor Carla Okafor takes 68%.", source) == 100.0
    assert entity_precision("Votes cast: 2,000.", source) == 100.0
    # distinct mentions: a repeated invention counts once
    assert entity_precision("Omar Silva and Omar Silva beat Carla Okafor.", source) == 50.0
    # a mid-sentence title is part of the name and must be in the source
    assert entity_precision("Yesterday Mayor Carla Okafor won.", source) == 0.0
    assert entity_precision("Mayor Carla Okafor won.", source) == 100.0


def test_empty_or_nameless_summaries():
    assert entity_precision("", "Carla Okafor won.") == 100.0
    assert entity_precision("The mayor won the vote.", "Carla Okafor won.") == 100.0
    assert fact_recall("", FACTS) == 0.0
    assert fact_precision("", FACTS) == 100.0
    assert fact_recall("", {**FACTS, "reference": []}) == 100.0


def test_fact_recall_and_precision():
    summary = "Judge Ana Ruiz fines Marlow Foods 20 million dollars in Cape Town."
    assert fact_recall(summary, FACTS) == 100.0
    assert fact_precision(summary, FACTS) == 100.0
    assert fact_recall("Marlow Foods fined.", FACTS) == pytest.approx(100 / 3)
    # a distractor's name and number are stated by the article, but are not the event's
    distracted = "Court fines Marlow Foods $20 million after Omar Silva and 12 others complain."
    assert fact_precision(distracted, FACTS) == 50.0
    assert fact_recall(distracted, FACTS) == pytest.approx(200 / 3)
    # a mention must fit inside one event value
    assert fact_precision("They saw Ruiz Marlow there.", FACTS) == 0.0
    assert entity_precision("They saw Ruiz Marlow there.", "Ana Ruiz Marlow") == 100.0


def test_texts_ngrams_is_the_union_of_each_texts_own():
    grams = texts_ngrams(["Ana Ruiz", "Marlow Foods"], 2)
    assert ("ana", "ruiz") in grams and ("marlow", "foods") in grams and ("ruiz",) in grams
    assert ("ruiz", "marlow") not in grams  # no n-gram spans two texts
    assert texts_ngrams([], 3) == set()


def test_novel_and_repeated_ngrams():
    assert novel_bigram_pct("The cat sat", "the cat ran") == 50.0
    assert novel_bigram_pct("a b a b", "a b") == pytest.approx(100 / 3)  # (b, a) is new
    assert novel_bigram_pct("Cat", "dog") == 0.0
    assert novel_bigram_pct("", "dog") == 0.0
    assert repeated_trigram_pct("a b c a b c") == 25.0
    assert repeated_trigram_pct("a a a a") == 50.0
    assert repeated_trigram_pct("a b") == 0.0
    assert summary_length("It's a 5-day strike.") == 6


def test_example_scores_keys():
    assert set(example_scores("Marlow Foods fined.", "Marlow Foods was fined.")) == {
        "entity_precision", "novel_bigram_pct", "repeated_trigram_pct", "length"}
    scores = example_scores("Marlow Foods fined.", "Marlow Foods was fined.", FACTS)
    assert scores["fact_recall"] == pytest.approx(100 / 3) and scores["fact_precision"] == 100.0
    assert scores["length"] == 3.0 and scores["novel_bigram_pct"] == 50.0


def test_real_cnndm_lead3_is_faithful_and_highlights_paraphrase():
    """Lead-3 copies its article, so nearly all of it must be supported; highlights reword and add a few
    names and dates, so they score lower, but a metric that failed most of them would be broken."""
    path = SHARED_CNNDM / "test.jsonl"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    with open(path, encoding="utf-8") as f:
        records = [json.loads(line) for line in f if line.strip()]
    lead = [entity_precision(lead_n(r["article"], 3), r["article"]) for r in records]
    highlights = [entity_precision(r["highlights"], r["article"]) for r in records]
    assert sum(score == 100.0 for score in lead) >= 0.95 * len(records)
    mean_lead, mean_highlights = sum(lead) / len(lead), sum(highlights) / len(highlights)
    assert 70.0 < mean_highlights < mean_lead
