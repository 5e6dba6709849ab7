"""The builtin corpus records each article's facts, without changing a byte of the text it generated before,
and the facts travel through the JSON lines files unchanged."""

import hashlib
import json
import string

import pytest

from kd.data import builtin
from kd.data.prepare import write_splits
from kd.data.sources import SPLITS, read_jsonl
from kd.errors import ConfigError
from kd.metrics.faithfulness import entity_precision, fact_precision, fact_recall, mentions
from kd.paths import raw_split

# sha256 of the corpus at fixed arguments (seed 0, n_distractors 1, entity_pool 15): id, article and
# highlights must not change by accident, or every stage after download would rerun on different data.
PARAMS_SIZES = {"train": 2000, "validation": 150, "test": 200}
TEXT_DIGESTS = {
    "train": "c0420fe2cfd5ee267d1ed625511bd11ba543f7536b10ba1c4cc0ff7571045004",
    "validation": "1a1b019fc10543d9f0c965a1fffcf01300deac260cb121668e900af07d4015e6",
    "test": "09993d81d1c57b82b871f8c65cd5d87ae4be35fa9fc7f3bfc42761f0e1ae814c",
}


def text_digest(records) -> str:
    h = hashlib.sha256()
    for r in records:
        h.update(json.dumps([r["id"], r["article"], r["highlights"]], ensure_ascii=False).encode() + b"\n")
    return h.hexdigest()


def slots_in_order(templates) -> list[str]:
    return [name.lower() for t in templates for _, name, _, _ in string.Formatter().parse(t) if name]


def params_split(split: str) -> list[dict]:
    return builtin.generate(split, PARAMS_SIZES[split], 0, n_distractors=1, entity_pool=15)


@pytest.fixture(scope="module")
def records():
    return builtin.generate("test", 300, seed=0, n_distractors=1, entity_pool=15)


@pytest.mark.parametrize("split", SPLITS)
def test_text_is_byte_identical_to_the_committed_data(split):
    assert text_digest(params_split(split)) == TEXT_DIGESTS[split]


def test_first_record_facts():
    record = params_split("test")[0]
    assert record["highlights"] == 'Carla Okafor elected mayor of Toronto with 68 percent of the vote.\nCarla Okafor promised 16,500 new homes.\nThe new mayor takes office in June.'
    assert record["facts"] == {'kind': 'election', 'event': {'winner': 'Carla Okafor', 'loser': 'Grace Lindqvist', 'city': 'Toronto', 'day': 'Sunday', 'share': '68', 'turnout': '77', 'homes': '16,500', 'month': 'June'}, 'reference': ['Carla Okafor', 'Toronto', '68', '16,500', 'June'], 'distractors': ['Dublin', 'Halvorsen Group', '12', '2019']}


def test_facts_shape_and_consistency(records):
    kinds = {kind.name: kind for kind in builtin.EVENT_KINDS}
    for r in records:
        facts = r["facts"]
        assert set(facts) == {"kind", "event", "reference", "distractors"}
        assert all(slot == slot.lower() for slot in facts["event"])  # no "{Role}" duplicates
        assert facts["reference"] and set(facts["reference"]) <= set(facts["event"].values())
        assert len(set(facts["reference"])) == len(facts["reference"])
        assert len(set(facts["distractors"])) == len(facts["distractors"])
        # every reference value is in the highlights, every event and distractor value in the article
        assert all(v.lower() in r["highlights"].lower() for v in facts["reference"])
        assert all(v in r["article"] or v[0].upper() + v[1:] in r["article"] for v in facts["distractors"])
        # the reference is the values of one of the kind's headlines, then of the included details' lines,
        # in order of first use
        details = [(sentence, line) for sentence, line in kinds[facts["kind"]].details if line]
        candidates = [list(dict.fromkeys(facts["event"][slot] for slot in slots_in_order(
                          h + tuple(line for sentence, line in details if builtin._fill(sentence, builtin._with_capitals(facts["event"])) in r["article"]))))
                      for h in kinds[facts["kind"]].highlights]
        assert facts["reference"] in candidates


def test_the_generators_rules_applied_to_the_article_give_the_reference(records):
    """Nothing in a reference is drawn apart from its article: the rules read back from the text alone
    (kd.data.builtin.rule_summary) reproduce every reference exactly, so the task's ceiling is 100."""
    wide = builtin.generate("validation", 300, seed=1, n_distractors=4, entity_pool=None)
    for r in [*records, *wide]:
        assert builtin.rule_summary(r["article"]) == r["highlights"], r
    assert builtin.rule_summary("Nothing happened today.") is None


def test_reference_highlights_are_fully_faithful(records):
    """Every name and number in the highlights comes from the event, and every used fact is stated."""
    for r in records:
        assert fact_recall(r["highlights"], r["facts"]) == 100.0, r["highlights"]
        assert fact_precision(r["highlights"], r["facts"]) == 100.0, r["highlights"]
        assert entity_precision(r["highlights"], r["article"]) == 100.0, r["highlights"]


def test_a_distractor_person_is_in_the_article_but_not_a_fact(records):
    def is_person(value: str) -> bool:
        parts = value.split()
        return len(parts) == 2 and parts[0] in builtin.FIRST_NAMES and parts[1] in builtin.LAST_NAMES

    record = next(r for r in records if any(map(is_person, r["facts"]["distractors"])))
    person = next(filter(is_person, record["facts"]["distractors"]))
    assert person in record["article"]
    summary = f"{record['highlights']}\nOfficials quoted {person}."
    n = len({tuple(m) for m in mentions(record["highlights"])})
    assert entity_precision(summary, record["article"]) == 100.0
    assert fact_precision(summary, record["facts"]) == pytest.approx(100.0 * n / (n + 1))
    assert fact_recall(summary, record["facts"]) == 100.0


def test_facts_survive_the_jsonl_files(tmp_path, records):
    splits = {split: records[:5] for split in SPLITS}
    write_splits(splits, tmp_path)
    assert read_jsonl(raw_split("test", tmp_path)) == records[:5]


def test_records_without_facts_stay_as_they_were(tmp_path):
    path = tmp_path / "plain.jsonl"
    path.write_text(json.dumps({"id": "a", "article": "A text.", "highlights": "A.", "url": "x"}) + "\n")
    assert read_jsonl(path) == [{"id": "a", "article": "A text.", "highlights": "A."}]


GOOD_FACTS = {"kind": "storm", "event": {"place": "Oslo"}, "reference": ["Oslo"], "distractors": []}


@pytest.mark.parametrize("facts, message", [
    ("Oslo", "'facts' must be an object"),
    ({k: v for k, v in GOOD_FACTS.items() if k != "distractors"}, "exactly the keys"),
    ({**GOOD_FACTS, "extra": 1}, "exactly the keys"),
    ({**GOOD_FACTS, "event": ["Oslo"]}, "'facts.event' must be a dict"),
    ({**GOOD_FACTS, "reference": "Oslo"}, "'facts.reference' must be a list"),
    ({**GOOD_FACTS, "kind": 3}, "'facts.kind' must be a str"),
    ({**GOOD_FACTS, "event": {"deaths": 3}}, "must all be strings"),
])
def test_bad_facts_name_file_and_line(tmp_path, facts, message):
    path = tmp_path / "bad.jsonl"
    good = {"id": "a", "article": "A text.", "highlights": "A.", "facts": GOOD_FACTS}
    bad = {"id": "b", "article": "B text.", "highlights": "B.", "facts": facts}
    path.write_text(json.dumps(good) + "\n" + json.dumps(bad) + "\n")
    with pytest.raises(ConfigError, match=rf"bad\.jsonl:2: .*{message}"):
        read_jsonl(path)
