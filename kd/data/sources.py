"""Loading the train/validation/test splits from local JSON lines files or the Hugging Face hub.

Every loader yields records normalised to {"id", "article", "highlights"} (highlight sentences joined by
"\\n", as in CNN/DailyMail), plus "facts" where a JSON lines record has them (the builtin corpus writes
them; see `kd.data.builtin.generate`), and raises ConfigError, naming the file and line or the dataset, on
bad input.
"""

import gzip
import hashlib
import io
import json
from pathlib import Path
from typing import Iterable, Iterator, Sequence

from kd.errors import ConfigError
from kd.jsonl import iter_jsonl
from kd.io import atomic_file

SPLITS = ("train", "validation", "test")
# Pools beside the splits (kd.data.prepare): the teacher's own labelled articles, and articles without
# references. Written only when the source gives them; the teacher never trains on `unlabeled`.
POOLS = ("teacher_train", "unlabeled")
LABELLED = ("train", "validation", "test", "teacher_train")
FIELDS = ("id", "article", "highlights")
# The optional "facts" object of a record and the type of each of its fields.
FACTS_FIELDS = {"kind": str, "event": dict, "reference": list, "distractors": list}


def _bad_text(record: dict, field: str) -> str | None:
    """Why `record[field]` is not a usable text, or None when it is."""
    if field not in record:
        return f"record missing {field!r}"
    if not isinstance(record[field], str) or not record[field].strip():
        return f"{field!r} must be a non-empty string, got {record[field]!r:.40}"
    return None


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".jsonl"):
        name = name.removesuffix(suffix)
    return name


def read_jsonl(path, *, article_field: str = "article", summary_field: str = "highlights",
               id_field: str = "id") -> list[dict]:
    """Every record of a `.jsonl` or `.jsonl.gz` file as a list; see `iter_records`."""
    return list(iter_records(path, article_field=article_field, summary_field=summary_field, id_field=id_field))


def iter_records(path, *, article_field: str = "article", summary_field: str = "highlights",
                 id_field: str = "id") -> Iterator[dict]:
    """The records of a `.jsonl` or `.jsonl.gz` file, one at a time, the named fields mapped to
    {"id", "article", "highlights"}, each checked as it is read (errors name the file and line).

    Blank lines are skipped; a record without `id_field` gets the id "<file stem>-<line number>". An id
    seen twice is an error naming both lines. A "facts" object (see `kd.data.builtin.generate`) is kept,
    after a check of its shape, so that faithfulness can be scored against it.
    """
    path = Path(path)
    numbered = ((lineno, _record(obj, f"{path}:{lineno}", article_field, summary_field, id_field,
                                 default_id=f"{_stem(path)}-{lineno}"))
                for lineno, obj in iter_jsonl(path))
    return _checked(numbered, where=str(path))


def iter_articles(path, *, article_field: str = "article", id_field: str = "id") -> Iterator[dict]:
    """The {"id", "article"} records of a `.jsonl` or `.jsonl.gz` file of articles without references
    (any other field is ignored), checked as in `iter_records`."""
    path = Path(path)
    for lineno, obj in iter_jsonl(path):
        where = f"{path}:{lineno}"
        if problem := _bad_text(obj, article_field):
            raise ConfigError(f"{where}: {problem}")
        yield {"id": record_id(obj, id_field, where, default=f"{_stem(path)}-{lineno}"), "article": obj[article_field]}


def _record(obj: dict, where: str, article_field: str, summary_field: str, id_field: str, *,
            default_id: str) -> dict:
    for field in (article_field, summary_field):
        if problem := _bad_text(obj, field):
            raise ConfigError(f"{where}: {problem}")
    record = {"id": record_id(obj, id_field, where, default=default_id), "article": obj[article_field],
              "highlights": obj[summary_field]}
    if "facts" in obj:
        record["facts"] = check_facts(obj["facts"], where)
    return record


def check_facts(facts, where: str) -> dict:
    """`facts` when it is {"kind": str, "event": {str: str}, "reference": [str], "distractors": [str]};
    anything else is an error naming `where` and the field, as the scores would fail later and vaguely."""
    if not isinstance(facts, dict):
        raise ConfigError(f"{where}: 'facts' must be an object, got {type(facts).__name__}")
    if set(facts) != set(FACTS_FIELDS):
        raise ConfigError(f"{where}: 'facts' must have exactly the keys {sorted(FACTS_FIELDS)}, got {sorted(facts)}")
    for key, kind in FACTS_FIELDS.items():
        if not isinstance(facts[key], kind):
            raise ConfigError(f"{where}: 'facts.{key}' must be a {kind.__name__}, got {facts[key]!r:.40}")
    values = [*facts["event"].keys(), *facts["event"].values(), *facts["reference"], *facts["distractors"]]
    if not all(isinstance(value, str) for value in values):
        raise ConfigError(f"{where}: 'facts' slots and values must all be strings")
    return facts


def record_id(obj: dict, id_field: str, where: str, *, default: str) -> str:
    """`obj[id_field]` as a string (`default` when absent); anything but a non-empty string or an integer
    is an error."""
    value = obj.get(id_field, default)
    if isinstance(value, bool) or not isinstance(value, (str, int)) or value == "":
        raise ConfigError(f"{where}: {id_field!r} must be a string or an integer, got {value!r:.40}")
    return str(value)


def validate_records(records, *, where: str, lines: Sequence[int] | None = None) -> list[dict]:
    """Checks a list of records from any source (see `validated`); `lines`, one line number per record,
    makes errors name the line instead of the record's index."""
    if not isinstance(records, list):
        raise ConfigError(f"{where}: expected a list of records, got {type(records).__name__}")
    numbered = zip(lines, records) if lines is not None else ((None, r) for r in records)
    for _ in _checked(numbered, where=where):
        pass
    return records


def validated(records: Iterable, *, where: str, fields: Sequence[str] = FIELDS) -> Iterator[dict]:
    """`records`, from any source, passed on one at a time as each passes the checks: a dict with
    non-empty string `fields` (id/article/highlights; id/article for unlabeled articles), no id twice
    (per-example results are keyed on it). An error names `where` and the record's index; an empty
    input is an error once it is exhausted."""
    return _checked(((None, r) for r in records), where=where, fields=fields)


def _checked(numbered: Iterable[tuple[int | None, object]], *, where: str,
             fields: Sequence[str] = FIELDS) -> Iterator[dict]:
    """(line number or None, record) pairs -> the records, checked as they pass (see `validated`).

    Only the ids are kept (to find the first of a duplicate), so a split of any size streams through.
    """
    first: dict[str, int] = {}  # id -> its first line, or its first record index when there are no lines
    n = 0
    for n, (line, record) in enumerate(numbered, start=1):
        at = _at(where, n - 1, line)
        if not isinstance(record, dict):
            raise ConfigError(f"{at}: expected a dict, got {type(record).__name__}")
        for field in fields:
            if problem := _bad_text(record, field):
                raise ConfigError(f"{at}: {problem}")
        _check_new_id(first, record["id"], n - 1, line, at=at)
        yield record
    if not n:
        raise ConfigError(f"{where}: no records (empty split)")


def check_unique_ids(ids: Sequence[str], *, where: str, lines: Sequence[int] | None = None) -> None:
    """An id seen twice is an error naming where it was first seen (`lines`: one line number per id)."""
    first: dict[str, int] = {}
    for i, rid in enumerate(ids):
        line = lines[i] if lines is not None else None
        _check_new_id(first, rid, i, line, at=_at(where, i, line))


def _check_new_id(first: dict[str, int], rid: str, index: int, line: int | None, *, at: str) -> None:
    """Records `rid` in `first` (id -> its first line, or record index without lines); a second is an error."""
    mark = index if line is None else line
    seen = first.setdefault(rid, mark)
    if seen != mark:
        raise ConfigError(f"{at}: duplicate id {rid!r} (first {'as record' if line is None else 'on line'} {seen})")


def _at(where: str, index: int, line: int | None) -> str:
    return f"{where}: record {index}" if line is None else f"{where}:{line}"


def load_hub(split: str, *, name: str = "abisee/cnn_dailymail", config: str | None = "3.0.0",
             max_samples: int | None = None, cache_dir=None, start: int = 0) -> Iterator[dict]:
    """Loads one split of a Hugging Face dataset with article/highlights/id columns, like CNN/DailyMail, and
    returns its records, read and checked one at a time (errors with the dataset or the arguments are raised
    here, bad records as they are reached).

    `name` is a hub dataset id or, through the same `datasets.load_dataset` call, a local dataset
    directory (e.g. one with train/validation/test JSON lines files; then `config` is null). `start`
    skips that many rows first (the pools follow the students' labelled articles in the training split).
    """
    if split not in SPLITS:
        raise ConfigError(f"split: expected one of {SPLITS}, got {split!r}")
    if max_samples is not None and (isinstance(max_samples, bool) or not isinstance(max_samples, int)
                                    or max_samples < 1):
        raise ConfigError(f"max_samples: expected a positive integer or null, got {max_samples!r}")
    import datasets  # slow to import, and only this loader needs it
    from huggingface_hub.errors import LocalEntryNotFoundError

    where = f"{name} ({config}) split {split!r}"
    unreachable = (f"cannot reach the Hugging Face hub to download {name} ({config})"
                   "; use data.source: jsonl with local files, or run where the hub is reachable"
                   " (with the dataset already in the datasets cache, set HF_HUB_OFFLINE=1 to use it)")
    # Offline, datasets retries for about 25 s (longer where connections hang) before it gives up.
    is_local = Path(name).exists()
    if not is_local and not datasets.config.HF_HUB_OFFLINE and (
            reason := _hub_unreachable(datasets.config.HF_ENDPOINT)):
        raise ConfigError(f"{unreachable} [{reason}]")
    try:
        dataset = datasets.load_dataset(name, config, split=split, cache_dir=cache_dir)
    except (ConnectionError, LocalEntryNotFoundError) as e:  # OfflineModeIsEnabled is a ConnectionError
        raise ConfigError(f"{unreachable} [{type(e).__name__}: {e}]") from None
    except datasets.exceptions.DatasetNotFoundError as e:
        raise ConfigError(f"{where}: dataset not found on the Hugging Face hub: {e}") from None
    except ValueError as e:  # an unknown config or split name
        raise ConfigError(f"{where}: {e}") from None
    missing = [field for field in FIELDS if field not in dataset.column_names]
    if missing:
        raise ConfigError(f"{where}: dataset has no column(s) {missing}; columns are {dataset.column_names}")
    if max_samples is not None or start:
        stop = len(dataset) if max_samples is None else min(start + max_samples, len(dataset))
        dataset = dataset.select(range(min(start, stop), stop))
    return validated(_rows(dataset.select_columns(list(FIELDS))), where=where)


def _rows(dataset, batch_size: int = 1000) -> Iterator[dict]:
    """The rows of a datasets.Dataset as dicts, read from its memory-mapped Arrow data a batch at a time
    (`to_list` would hold the whole split in memory)."""
    for batch in dataset.iter(batch_size=batch_size):
        for values in zip(*batch.values()):
            yield dict(zip(batch, values))


def _hub_unreachable(endpoint: str, *, timeout: float = 5.0) -> str | None:
    """One quick request to the hub, without retries: why it failed, or None when the hub answered."""
    from huggingface_hub.errors import OfflineModeIsEnabled
    from huggingface_hub.utils import get_session, httpx

    try:
        get_session().head(endpoint, timeout=timeout)
    except OfflineModeIsEnabled:  # huggingface_hub is offline: datasets will use its cache or say why not
        return None
    except httpx.TransportError as e:  # DNS, refused or hanging connections, proxies: any status is an answer
        return f"{type(e).__name__}: {e}"
    return None


def text_key(text: str) -> bytes:
    """A digest of `text` with case and runs of white space normalized: the same article in two pools,
    however it was re-spaced or re-cased, has the same key (kd.data.prepare refuses such overlaps)."""
    return hashlib.blake2b(" ".join(text.lower().split()).encode("utf-8"), digest_size=16).digest()


def write_jsonl_atomic(records, path) -> int:
    """Writes records as JSON lines (gzipped for `.gz`) to a temp file beside `path`, then renames it;
    returns how many were written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_file(path) as tmp:
        return write_jsonl(records, tmp, gz=path.name.endswith(".gz"))


def write_jsonl(records: Iterable[dict], path, *, gz: bool = False) -> int:
    """Writes records, as they come, as JSON lines to `path` (not atomic: see `write_jsonl_atomic`); returns
    how many were written."""
    n = 0
    with open(path, "wb") as raw:
        # mtime=0 keeps the bytes, and so the DVC hash, the same for the same records
        stream = gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) if gz else raw
        with io.TextIOWrapper(stream, encoding="utf-8") as f:
            for n, record in enumerate(records, start=1):
                f.write(json.dumps(record, ensure_ascii=False) + "\n")
    return n


def articles_only(records: Iterable[dict]) -> Iterator[dict]:
    """Records without their references: what an unlabeled pool holds."""
    return ({"id": r["id"], "article": r["article"]} for r in records)
