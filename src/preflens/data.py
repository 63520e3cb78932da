"""Data ingestion: read preference pairs from JSONL, CSV, Parquet or Hugging Face datasets.

Every source is turned into one canonical table, a :class:`PairDataset`, with the columns

``id, domain, prompt, response_a, response_b, label:<mechanism> ...``

where each ``label:<mechanism>`` column holds which response that mechanism preferred:
``"a"``, ``"b"``, ``"tie"``, or missing. Rows are checked one by one; a row with a problem is
skipped (or fixed, or given a default) and the problem is recorded with its file, line or row,
and field in :attr:`PairDataset.report`, so a bad row never shifts another row. Problems that
make the whole file unusable (no such file, a missing column, bytes that are not UTF-8 in a CSV)
raise :class:`~preflens.errors.DataError` with the fix in the message.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import warnings
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from .errors import ConfigError, DataError, DataWarning, missing_dependency
from .names import clean_domain

CORE_COLUMNS = ("id", "domain", "prompt", "response_a", "response_b")
LABEL_PREFIX = "label:"
LABEL_VALUES = ("a", "b", "tie")
DEFAULT_MECHANISM = "human"
DEFAULT_MAX_RESPONSE_CHARS = 200_000
DEFAULT_MAX_INPUT_MB = 2048
"""Bytes read from one file (after decompression) before loading stops: a guard against a small
compressed file that inflates without end. Raise it with ``--max-input-mb``."""
MAX_RECORD_BYTES = 64 << 20
"""A JSON Lines record longer than this is skipped (and reported) without being held in memory."""
MAX_LISTED_PROBLEMS = 10_000
"""Problems listed one by one in ``validation.json`` and ``validate --json`` (all are counted)."""
COLUMN_SAMPLE = 1000
"""Records whose keys decide the columns of a JSON source (rows may lack keys)."""
_BOM = b"\xef\xbb\xbf"

# Spellings of a/b/tie found in public preference datasets (Chatbot Arena uses model_a/model_b,
# "tie (bothbad)"); compared after lower-casing and stripping. Anything else needs --label-map.
LABEL_ALIASES: dict[str, str] = {
    "a": "a", "b": "b", "tie": "tie",
    "response_a": "a", "response_b": "b", "model_a": "a", "model_b": "b",
    "tie (bothbad)": "tie", "both_bad": "tie", "bothbad": "tie", "equal": "tie", "draw": "tie",
}

# Column names tried, in order, when a column is not given explicitly.
COLUMN_ALIASES: dict[str, tuple[str, ...]] = {
    "id": ("id", "pair_id", "question_id", "uid"),
    "domain": ("domain", "category", "subset"),
    "prompt": ("prompt", "query", "question", "instruction", "input", "conversation", "history"),
    "a": ("response_a", "response_1", "answer_a", "answer_1", "completion_a", "completion_1", "output_a",
          "output_1", "response1", "answer1"),
    "b": ("response_b", "response_2", "answer_b", "answer_2", "completion_b", "completion_2", "output_b",
          "output_2", "response2", "answer2"),
    "label": ("label", "winner", "preference", "choice"),
    "chosen": ("chosen",),
    "rejected": ("rejected",),
}

# Turn markers after which a response starts, for splitting a shared conversation prefix.
_ASSISTANT_MARKERS = ("\n\nAssistant:", "\nAssistant:", "Assistant:", "<|im_start|>assistant\n")

Action = Literal["skipped", "fixed", "default", "label dropped", "warning"]


@dataclass(frozen=True)
class Problem:
    """One problem found in one row of the input."""

    location: str
    field: str | None
    message: str
    action: Action

    @property
    def where(self) -> str:
        return f"{self.location}, field '{self.field}'" if self.field else self.location

    def __str__(self) -> str:
        return f"{self.where}: {self.message} ({self.action})"


@dataclass
class ValidationReport:
    """What was read from a source and every problem met on the way."""

    source: str
    rows_read: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def rows_skipped(self) -> int:
        return sum(1 for p in self.problems if p.action == "skipped")

    def counts(self) -> dict[str, int]:
        """Number of problems per (action, message kind)."""
        return dict(Counter(f"{p.action}: {_kind(p.message)}" for p in self.problems))

    def to_dict(self, max_listed: int = MAX_LISTED_PROBLEMS) -> dict[str, Any]:
        """Counts of every kind of problem, and the first ``max_listed`` problems one by one."""
        return {
            "source": self.source,
            "rows_read": self.rows_read,
            "rows_skipped": self.rows_skipped,
            "problem_counts": self.counts(),
            "problems_total": len(self.problems),
            "problems": [
                {"location": p.location, "field": p.field, "message": p.message, "action": p.action}
                for p in self.problems[:max_listed]
            ],
        }


def _kind(message: str) -> str:
    """The stable head of a problem message (before any ':' detail), for grouping."""
    return message.split(":", 1)[0]


class PairDataset:
    """Preference pairs in the canonical schema, with the report of how they were read.

    Attributes
    ----------
    frame : pandas.DataFrame
        One row per pair; columns ``id, domain, prompt, response_a, response_b`` and one
        ``label:<mechanism>`` column per mechanism (values ``a``, ``b``, ``tie`` or missing).
    report : ValidationReport
        Rows read and problems found while loading.
    """

    def __init__(self, frame: pd.DataFrame, report: ValidationReport | None = None) -> None:
        missing = [c for c in CORE_COLUMNS if c not in frame.columns]
        if missing:
            raise DataError(f"a PairDataset needs the columns {list(CORE_COLUMNS)}; missing {missing}")
        self.frame = frame.reset_index(drop=True)
        self.report = report or ValidationReport(source="<memory>", rows_read=len(frame))

    def __len__(self) -> int:
        return len(self.frame)

    def __repr__(self) -> str:
        return (
            f"PairDataset({len(self)} pairs, domains={self.domains}, mechanisms={self.mechanisms})"
        )

    @property
    def mechanisms(self) -> list[str]:
        """Names of the mechanisms that have a label column."""
        return [c[len(LABEL_PREFIX):] for c in self.frame.columns if c.startswith(LABEL_PREFIX)]

    @property
    def domains(self) -> list[str]:
        """Domains in order of first appearance."""
        return list(dict.fromkeys(self.frame["domain"]))

    def labels(self, mechanism: str) -> pd.Series:
        """The label column of one mechanism (``a``/``b``/``tie`` or missing), indexed like frame."""
        column = LABEL_PREFIX + mechanism
        if column not in self.frame.columns:
            raise DataError(
                f"no labels for mechanism '{mechanism}'; the data has: {', '.join(self.mechanisms) or 'none'}"
            )
        return self.frame[column]

    def sample(self, n: int, *, random_state: int = 0) -> PairDataset:
        """A random subset of ``n`` pairs (all of them when ``n >= len(self)``)."""
        if n >= len(self):
            return self
        return PairDataset(self.frame.sample(n=n, random_state=random_state), self.report)

    def summary(self) -> dict[str, Any]:
        """Counts per domain and per mechanism, and response lengths, as plain data."""
        lengths = pd.concat([self.frame["response_a"].str.len(), self.frame["response_b"].str.len()])
        labels = {}
        for mechanism in self.mechanisms:
            values = self.labels(mechanism)
            counts = {value: int((values == value).sum()) for value in LABEL_VALUES}
            counts["missing"] = int(values.isna().sum())
            labels[mechanism] = counts
        return {
            "pairs": len(self),
            "domains": {d: int(n) for d, n in self.frame["domain"].value_counts(sort=False).items()},
            "labels": labels,
            "response_chars": {
                "median": float(lengths.median()) if len(lengths) else 0.0,
                "max": int(lengths.max()) if len(lengths) else 0,
            },
        }

    def to_parquet(self, path: str | os.PathLike[str]) -> None:
        """Save the canonical table (the report is saved separately by the run folder)."""
        self.frame.to_parquet(path, index=False)

    @classmethod
    def read_parquet(cls, path: str | os.PathLike[str]) -> PairDataset:
        """Load a table written by :meth:`to_parquet`."""
        from .features import read_parquet

        frame = read_parquet(path, "pairs table")
        return cls(frame, ValidationReport(source=str(path), rows_read=len(frame)))


# --------------------------------------------------------------------------------------------
# Reading raw records from each format
# --------------------------------------------------------------------------------------------


@dataclass
class _Raw:
    """A raw record and where it came from, or the problem that stopped it being read."""

    location: str
    record: dict[str, Any] | None
    problem: Problem | None = None


def _detect_format(source: str) -> str:
    if source.startswith(("hf:", "hf://")):
        return "hf"
    path = Path(source)
    if path.is_dir():
        if any((path / name).exists() for name in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf-disk"
        raise DataError(
            f"{source}: is a folder but not a Hugging Face dataset saved with save_to_disk "
            "(no dataset_info.json, state.json or dataset_dict.json); pass a data file instead"
        )
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes[-1:] == [".gz"]:
        suffixes = suffixes[:-1]
    ext = suffixes[-1] if suffixes else ""
    formats = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "json", ".csv": "csv",
               ".tsv": "tsv", ".parquet": "parquet", ".pq": "parquet"}
    if ext not in formats:
        raise DataError(
            f"{source}: cannot tell the format from the extension '{ext or '(none)'}'; "
            "use .jsonl, .json, .csv, .tsv or .parquet, or pass --format"
        )
    return formats[ext]


class _Limited(io.RawIOBase):
    """A binary stream over a file (gunzipped when ``.gz``) that stops at ``limit`` bytes with a DataError."""

    def __init__(self, path: Path, limit: int) -> None:
        if not path.exists():
            raise DataError(f"{path}: no such file")
        if path.is_dir():
            raise DataError(f"{path}: is a folder, not a data file")
        if path.suffix.lower() == ".gz":
            import gzip

            self._handle: Any = gzip.open(path, "rb")
        else:
            self._handle = path.open("rb")
        self.path, self.limit, self.read_so_far = path, limit, 0

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        want = self.limit + 1 - self.read_so_far if size < 0 else min(size, self.limit + 1 - self.read_so_far)
        try:
            chunk = self._handle.read(max(want, 0))
        except (OSError, EOFError) as exc:  # a truncated or corrupt gzip stream
            raise DataError(f"{self.path}: cannot be read: {exc}") from None
        self.read_so_far += len(chunk)
        if self.read_so_far > self.limit:
            raise DataError(
                f"{self.path}: more than {self.limit / (1 << 20):,.0f} MB of data (after decompression); if the "
                "file is really that large, raise the limit with --max-input-mb (or convert it to Parquet)")
        return chunk

    def close(self) -> None:
        self._handle.close()
        super().close()


def _read_bytes(path: Path, limit: int) -> bytes:
    with _Limited(path, limit) as handle:
        chunks = []
        while chunk := handle.read(1 << 24):
            chunks.append(chunk)
    data = b"".join(chunks)
    return data[len(_BOM):] if data.startswith(_BOM) else data


def _lines(handle: _Limited) -> Iterator[tuple[int, bytes | None]]:
    """(line number, bytes) for each record of a JSON Lines stream; None for a record over the size limit.

    A line ends at LF, CRLF or a bare CR (a raw CR cannot occur inside a JSON record). A byte-order mark
    at the start is dropped. Runs of blank lines are counted, not split, so a stream of newlines is fast.
    """
    line_no, pending, size, overlong, first = 0, [], 0, False, True
    while chunk := handle.read(1 << 20):
        if first:
            chunk, first = (chunk[len(_BOM):] if chunk.startswith(_BOM) else chunk), False
        if not pending and not overlong and not chunk.strip():
            line_no += chunk.count(b"\n") + chunk.count(b"\r") - chunk.count(b"\r\n")
            continue
        if b"\r" in chunk:  # a CRLF split across two chunks gives one extra blank line, which is skipped
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        parts = chunk.split(b"\n")
        for index, part in enumerate(parts):
            last = index == len(parts) - 1
            if overlong:
                if not last:
                    line_no += 1
                    yield line_no, None
                    overlong = False
                continue
            pending.append(part)
            size += len(part)
            if last:
                if size > MAX_RECORD_BYTES:
                    pending, size, overlong = [], 0, True
                break
            line_no += 1
            yield line_no, b"".join(pending)
            pending, size = [], 0
    if overlong:
        yield line_no + 1, None
    elif size:
        yield line_no + 1, b"".join(pending)


def _iter_jsonl(path: Path, encoding: str, limit: int) -> Iterator[_Raw]:
    with _Limited(path, limit) as handle:
        for line_no, raw_line in _lines(handle):
            location = f"{path.name} line {line_no}"
            if raw_line is None:
                yield _Raw(location, None, Problem(
                    location, None, f"record longer than {MAX_RECORD_BYTES >> 20} MB; it was not read", "skipped"))
                continue
            if not raw_line.strip():
                continue
            yield _parse_record(raw_line, location, encoding)


def _parse_record(raw_line: bytes, location: str, encoding: str) -> _Raw:
    """One JSON Lines record, or the problem that stops it being read (never an exception)."""
    try:
        text = raw_line.decode(encoding)
    except UnicodeDecodeError as exc:
        return _Raw(location, None, Problem(
            location, None,
            f"not valid {encoding}: byte 0x{raw_line[exc.start]:02x} at column {exc.start + 1}; "
            "re-save the file as UTF-8 or pass --encoding", "skipped"))
    except LookupError:
        raise DataError(f"unknown text encoding '{encoding}'; pass --encoding utf-8, latin-1, ...") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return _Raw(location, None, Problem(
            location, None, f"not valid JSON: {exc.msg} at column {exc.colno}", "skipped"))
    except RecursionError:
        return _Raw(location, None, Problem(location, None, "not readable: JSON nested too deeply", "skipped"))
    except ValueError as exc:  # an integer of more than 4,300 digits, for example
        return _Raw(location, None, Problem(location, None, f"not readable: {str(exc)[:120]}", "skipped"))
    if not isinstance(record, dict):
        return _Raw(location, None, Problem(
            location, None, f"not a JSON object: got {_json_kind(record)}", "skipped"))
    return _Raw(location, record)


def _json_kind(value: Any) -> str:
    kinds = {bool: "a boolean", int: "a number", float: "a number", str: "a string", list: "an array",
             dict: "an object", type(None): "null"}
    return kinds.get(type(value), type(value).__name__)


def _decode_whole(path: Path, data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except LookupError:
        raise DataError(f"unknown text encoding '{encoding}'; pass --encoding utf-8, latin-1, ...") from None
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise DataError(
            f"{path}: line {line}, column {column}: byte 0x{data[exc.start]:02x} is not valid "
            f"{encoding}; re-save the file as UTF-8 or pass --encoding (for example latin-1)"
        ) from None


def _iter_json_array(path: Path, encoding: str, limit: int) -> Iterator[_Raw]:
    data = _read_bytes(path, limit)
    text = _decode_whole(path, data, encoding)
    try:
        records = json.loads(text)
    except json.JSONDecodeError as exc:
        if text.lstrip().startswith("{"):  # one object per line, saved as .json
            yield from _iter_jsonl(path, encoding, limit)
            return
        raise DataError(f"{path}: not valid JSON: {exc.msg} at line {exc.lineno}, column {exc.colno}") from None
    except (RecursionError, ValueError) as exc:
        raise DataError(f"{path}: cannot be read as JSON: {'nested too deeply' if isinstance(exc, RecursionError) else exc}") from None
    if isinstance(records, dict):
        lists = [key for key, value in records.items()
                 if isinstance(value, list) and value and all(isinstance(v, dict) for v in value[:100])]
        if len(lists) != 1:
            keys = ", ".join(map(repr, list(records)[:20]))
            raise DataError(f"{path}: is one JSON object (keys {keys}), not an array of pairs or JSON Lines; "
                            "save the pairs as a list of objects, one per pair")
        key = lists[0]
        records = records[key]
        yield from ((_Raw(f"{path.name} {key}[{i}]", r) if isinstance(r, dict) else
                     _Raw(f"{path.name} {key}[{i}]", None, Problem(f"{path.name} {key}[{i}]", None,
                                                                   f"not a JSON object: got {_json_kind(r)}", "skipped")))
                    for i, r in enumerate(records))
        return
    if not isinstance(records, list):
        raise DataError(f"{path}: expected a JSON array of objects or JSON Lines, got {_json_kind(records)}")
    for index, record in enumerate(records):
        location = f"{path.name} item {index}"
        if isinstance(record, dict):
            yield _Raw(location, record)
        else:
            yield _Raw(location, None, Problem(location, None, f"not a JSON object: got {_json_kind(record)}", "skipped"))


def _iter_frame(frame: pd.DataFrame, name: str, row_offset: int = 1, unit: str = "row") -> Iterator[_Raw]:
    columns = [str(c) for c in frame.columns]
    for index, values in enumerate(frame.itertuples(index=False, name=None)):
        yield _Raw(f"{name} {unit} {index + row_offset}", dict(zip(columns, values)))


def _read_csv(path: Path, sep: str, encoding: str, limit: int) -> pd.DataFrame:
    text = _decode_whole(path, _read_bytes(path, limit), encoding)
    try:
        return pd.read_csv(io.StringIO(text), sep=sep, dtype=str, keep_default_na=False)
    except pd.errors.ParserError as exc:
        raise DataError(f"{path}: not a well-formed {'TSV' if sep == chr(9) else 'CSV'} file: "
                        f"{' '.join(str(exc).split())}; check the quoting on that line") from None
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty") from None


def _iter_hf(source: str, split: str | None, config: str | None, limit: int | None) -> Iterator[_Raw]:
    """Rows of ``hf:NAME`` (a hub dataset, or a local folder laid out like a hub repository) or of a folder
    written by ``save_to_disk``. With ``limit`` a hub dataset is streamed and only that many rows are read."""
    try:
        import datasets
    except ImportError:
        raise missing_dependency("datasets", "hf") from None
    if source.startswith(("hf:", "hf://")):
        name = source.split(":", 1)[1]
        name = name[2:] if name.startswith("//") else name
        local = Path(name).expanduser()
        name = str(local) if local.is_dir() else name.lstrip("/")
        try:
            loaded = datasets.load_dataset(name, config, split=split or "train", streaming=limit is not None)
        except Exception as exc:  # the library raises many kinds; all mean "could not load"
            raise DataError(
                f"{source}: could not load the Hugging Face dataset '{name}'"
                + (f" (subset '{config}')" if config else "") + f": {' '.join(str(exc).split())[:300]}. Without a "
                "network, save it on a machine that has one (dataset.save_to_disk(DIR)) and pass DIR, or pass a "
                "local folder laid out like the hub repository as hf:FOLDER") from None
        if limit is not None:
            for index, record in enumerate(loaded.take(limit)):
                yield _Raw(f"{source} index {index}", dict(record))
            return
        yield from _iter_frame(loaded.to_pandas(), source, row_offset=0, unit="index")
        return
    if config:
        raise DataError(f"{source}: --subset applies to hf:NAME; a save_to_disk folder holds one subset")
    loaded = datasets.load_from_disk(source)
    if isinstance(loaded, datasets.DatasetDict):
        chosen = split or ("train" if "train" in loaded else None)
        if chosen not in loaded:
            raise DataError(f"{source}: has splits {list(loaded)}; choose one with --split")
        loaded = loaded[chosen]
    if limit is not None:
        loaded = loaded.select(range(min(limit, len(loaded))))
    yield from _iter_frame(loaded.to_pandas(), source, row_offset=0, unit="index")


def _iter_source(source: str, fmt: str, *, encoding: str, split: str | None, limit: int, config: str | None = None,
                 rows: int | None = None) -> Iterator[_Raw]:
    path = Path(source)
    if fmt == "jsonl":
        yield from _iter_jsonl(path, encoding, limit)
    elif fmt == "json":
        yield from _iter_json_array(path, encoding, limit)
    elif fmt in ("csv", "tsv"):
        # Row N is the N-th data row; a quoted field may span lines, so rows are not lines.
        yield from _iter_frame(_read_csv(path, "\t" if fmt == "tsv" else ",", encoding, limit), path.name)
    elif fmt == "parquet":
        if not path.is_file():
            raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: is a folder, not a file")
        try:
            frame = pd.read_parquet(path)
        except Exception as exc:  # pyarrow raises ArrowInvalid, OSError, ...
            raise DataError(f"{path}: not a readable Parquet file: {exc}") from None
        yield from _iter_frame(frame, path.name)
    elif fmt in ("hf", "hf-disk"):
        yield from _iter_hf(source, split, config, rows)
    else:
        raise DataError(f"unknown format '{fmt}'; use jsonl, json, csv, tsv, parquet or hf")


# --------------------------------------------------------------------------------------------
# Normalising one record
# --------------------------------------------------------------------------------------------


def _is_missing(value: Any) -> bool:
    if value is None:
        return True
    if isinstance(value, float) and math.isnan(value):
        return True
    return isinstance(value, str) and not value.strip()


class _NotText(ValueError):
    """A field holds a value that is not text and has no known text shape; the message says what it is."""


def _listlike(value: Any) -> Any:
    return value.tolist() if hasattr(value, "tolist") and not isinstance(value, (str, bytes)) else value


def _parts_text(value: list[Any]) -> str | None:
    """The text of OpenAI-style content parts ``[{"type": "text", "text": ...}, ...]``, else None."""
    if value and all(isinstance(p, Mapping) and "text" in p and p.get("type", "text") == "text" for p in value):
        return "\n".join(_text(p["text"]) or "" for p in value)
    return None


def _as_messages(value: Any) -> list[dict[str, str]] | None:
    """A conversation given as a list of {role, content} messages, else None."""
    value = _listlike(value)
    if isinstance(value, list) and value and all(isinstance(m, Mapping) and "content" in m for m in value):
        return [{"role": str(m.get("role") or "user"), "content": _text(m["content"]) or ""} for m in value]
    return None


def render_conversation(messages: Sequence[Mapping[str, str]]) -> str:
    """Render chat messages as ``Role: content`` blocks separated by blank lines."""
    return "\n\n".join(f"{m['role'].capitalize()}: {m['content']}" for m in messages)


def _text(value: Any) -> str | None:
    """The text of one field: None when missing or blank; :class:`_NotText` when it holds no text.

    Known shapes are read as text: strings, UTF-8 bytes (Parquet binary columns), OpenAI content
    parts, chat messages, and finite numbers. Booleans, infinities, other objects and lists are not.
    """
    value = _listlike(value)
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _NotText(f"holds an unpaired surrogate ({value[exc.start]!a}), which is not valid Unicode") from None
        return value if value.strip() else None
    if isinstance(value, bool):
        raise _NotText(f"a boolean ({str(value).lower()}), not text")
    if isinstance(value, (int, float)):
        if isinstance(value, float) and math.isnan(value):
            return None
        if isinstance(value, float) and math.isinf(value):
            raise _NotText("an infinite number, not text")
        return str(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        try:
            return _text(bytes(value).decode("utf-8"))
        except UnicodeDecodeError:
            raise _NotText("bytes that are not UTF-8 text") from None
    if isinstance(value, list):
        if not value:
            return None
        text = _parts_text(value)
        if text is not None:
            return text if text.strip() else None
        messages = _as_messages(value)
        if messages is not None:
            return render_conversation(messages)
        raise _NotText(f"a list of {len(value)} item(s), not text")
    if isinstance(value, Mapping):
        if "text" in value and value.get("type", "text") == "text" and len(value) <= 2:
            return _text(value["text"])
        if "content" in value and set(value) <= {"role", "content", "name"}:
            return _text(value["content"])
        raise _NotText(f"an object (keys {', '.join(map(str, list(value)[:5]))}), not text")
    raise _NotText(f"a {type(value).__name__}, not text")


def split_shared_prefix(chosen: str, rejected: str) -> tuple[str, str, str]:
    """Split two full conversations into (shared prompt, chosen response, rejected response).

    The prompt ends at the last assistant-turn marker (``"\\n\\nAssistant:"`` as in HH-RLHF) that
    lies inside the common prefix. With no marker there, the prompt is empty and both texts are
    kept whole, so a response is never cut in the middle of a word.
    """
    common = len(os.path.commonprefix([chosen, rejected]))
    cut = -1
    for marker in _ASSISTANT_MARKERS:
        index = chosen.rfind(marker, 0, common)
        if index >= 0 and index + len(marker) <= common:
            cut = max(cut, index + len(marker))
    if cut < 0:
        return "", chosen.strip(), rejected.strip()
    return chosen[:cut].strip(), chosen[cut:].strip(), rejected[cut:].strip()


def _split_messages(chosen: list[dict[str, str]], rejected: list[dict[str, str]]) -> tuple[str, str, str]:
    shared = 0
    while shared < min(len(chosen), len(rejected)) - 1 and chosen[shared] == rejected[shared]:
        shared += 1

    def rest(messages: list[dict[str, str]]) -> str:
        tail = messages[shared:]
        if len(tail) == 1:
            return tail[0]["content"].strip()
        return render_conversation(tail).strip()

    return render_conversation(chosen[:shared]).strip(), rest(chosen), rest(rejected)


def _stable_unit(*parts: str) -> float:
    """A number in [0, 1) fixed by the parts, independent of row order."""
    digest = hashlib.sha256("\x1f".join(parts).encode("utf-8", "surrogatepass")).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def content_id(domain: str, prompt: str, response_a: str, response_b: str) -> str:
    """An id derived from a pair's content, so it is stable however the file is ordered."""
    digest = hashlib.sha256("\x1f".join((domain, prompt, response_a, response_b)).encode("utf-8", "surrogatepass"))
    return "p" + digest.hexdigest()[:15]


@dataclass
class _Columns:
    """The resolved column names for one source."""

    layout: Literal["ab", "chosen_rejected"]
    prompt: str | None
    a: str | None
    b: str | None
    chosen: str | None
    rejected: str | None
    domain: str | None
    id: str | None
    labels: dict[str, str]  # mechanism -> column (empty for chosen/rejected)


def _listed(columns: Sequence[str], limit: int = 20) -> str:
    """Column names for a message: the first ``limit``, then how many more."""
    shown = ", ".join(repr(c[:60]) if len(c) > 60 else c for c in columns[:limit])
    return shown + (f" ... and {len(columns) - limit:,} more" if len(columns) > limit else "")


def _did_you_mean(wanted: Sequence[str], columns: Sequence[str]) -> str:
    import difflib

    for name in wanted:
        close = difflib.get_close_matches(name, columns, n=1, cutoff=0.75)
        if close:
            return f"; did you mean '{close[0]}'?"
    return ""


def _pick(columns: Sequence[str], given: str | None, role: str, source: str, required: bool) -> str | None:
    if given is not None:
        if given not in columns:
            raise DataError(
                f"{source}: no column '{given}' (given for {role}){_did_you_mean([given], columns)} "
                f"Columns found: {_listed(columns)}"
            )
        return given
    for alias in COLUMN_ALIASES[role]:
        if alias in columns:
            return alias
    if required:
        option = {"prompt": "--prompt-col", "a": "--a-col", "b": "--b-col", "chosen": "--chosen-col",
                  "rejected": "--rejected-col"}[role]
        what = {"prompt": "prompt", "a": "response A", "b": "response B"}.get(role, f"{role} response")
        raise DataError(
            f"{source}: no column for the {what} (looked for {', '.join(COLUMN_ALIASES[role])})"
            f"{_did_you_mean(COLUMN_ALIASES[role], columns)} Columns found: {_listed(columns)}. "
            f"Name yours with {option} COLUMN"
        )
    return None


def _parse_label_cols(label_cols: Sequence[str] | Mapping[str, str] | None) -> dict[str, str] | None:
    if label_cols is None:
        return None
    if isinstance(label_cols, Mapping):
        return dict(label_cols)
    parsed: dict[str, str] = {}
    for item in label_cols:
        name, _, column = item.partition("=")
        parsed[name.strip()] = (column or name).strip()
    return parsed


def _resolve_columns(
    columns: Sequence[str], source: str, *, id_col: str | None, prompt_col: str | None,
    a_col: str | None, b_col: str | None, chosen_col: str | None, rejected_col: str | None,
    domain_col: str | None, label_cols: dict[str, str] | None, chosen_label: str,
) -> _Columns:
    use_chosen = chosen_col is not None or rejected_col is not None or (
        a_col is None and b_col is None
        and not any(c in columns for c in COLUMN_ALIASES["a"])
        and "chosen" in columns and "rejected" in columns
    )
    id_name = _pick(columns, id_col, "id", source, required=False)
    domain_name = _pick(columns, domain_col, "domain", source, required=False)
    if use_chosen:
        _mechanism_name(chosen_label)
        chosen = _pick(columns, chosen_col or "chosen", "chosen", source, required=True)
        rejected = _pick(columns, rejected_col or "rejected", "rejected", source, required=True)
        prompt = _pick(columns, prompt_col, "prompt", source, required=False)
        return _Columns("chosen_rejected", prompt, None, None, chosen, rejected, domain_name, id_name,
                        {chosen_label: ""})
    prompt = _pick(columns, prompt_col, "prompt", source, required=True)
    a = _pick(columns, a_col, "a", source, required=True)
    b = _pick(columns, b_col, "b", source, required=True)
    if label_cols is None:
        found = _pick(columns, None, "label", source, required=False)
        label_cols = {DEFAULT_MECHANISM: found} if found else {}
    for name, column in label_cols.items():
        _mechanism_name(name)
        if column not in columns:
            raise DataError(
                f"{source}: no label column '{column}' (for mechanism '{name}'){_did_you_mean([column], columns)} "
                f"Columns found: {_listed(columns)}"
            )
    return _Columns("ab", prompt, a, b, None, None, domain_name, id_name, dict(label_cols))


def _mechanism_name(name: str) -> str:
    from .names import check_mechanism

    try:
        return check_mechanism(name, "--label-col/--chosen-label")
    except ConfigError as exc:
        raise DataError(str(exc)) from None


def _normalise_label(value: Any, label_map: Mapping[str, str]) -> str | None | Literal[False]:
    """'a'/'b'/'tie', None when missing, False when the value is not understood."""
    if _is_missing(value):
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    key = str(value).strip()
    if key in label_map:
        return label_map[key]
    return LABEL_ALIASES.get(key.lower(), False)


# --------------------------------------------------------------------------------------------
# The public loader
# --------------------------------------------------------------------------------------------


def load_pairs(
    source: str | os.PathLike[str],
    *,
    format: str | None = None,
    id_col: str | None = None,
    prompt_col: str | None = None,
    a_col: str | None = None,
    b_col: str | None = None,
    label_cols: Sequence[str] | Mapping[str, str] | None = None,
    domain_col: str | None = None,
    chosen_col: str | None = None,
    rejected_col: str | None = None,
    chosen_label: str = DEFAULT_MECHANISM,
    domain: str | None = None,
    default_domain: str = "default",
    label_map: Mapping[str, str] | None = None,
    seed: int = 0,
    split: str | None = None,
    encoding: str = "utf-8",
    max_response_chars: int = DEFAULT_MAX_RESPONSE_CHARS,
    max_input_mb: int = DEFAULT_MAX_INPUT_MB,
    config: str | None = None,
    limit: int | None = None,
    strict: bool = False,
    progress: Callable[[int], None] | None = None,
) -> PairDataset:
    """Load preference pairs from a file, a saved Hugging Face dataset, or ``hf:NAME``.

    Parameters
    ----------
    source : path or str
        A ``.jsonl``/``.json``/``.csv``/``.tsv``/``.parquet`` file (optionally ``.gz`` for the
        text formats), a folder written by ``datasets.Dataset.save_to_disk``, ``hf:NAME`` to load a
        hub dataset by name (needs a network, or the hub cache), or ``hf:FOLDER`` for a local folder
        laid out like a hub repository (data files, and a README whose YAML names the configs).
    format : str, optional
        Override the format detected from the extension.
    prompt_col, a_col, b_col, id_col, domain_col : str, optional
        Column names; when not given, common names are tried (``prompt``/``query``/...).
    label_cols : list of ``"COL"`` or ``"NAME=COL"``, or a mapping NAME -> COL, optional
        One column per mechanism. Default: a column named ``label``/``winner``/... as ``human``.
    chosen_col, rejected_col : str, optional
        Use the chosen/rejected layout. It is also used automatically when the data has
        ``chosen`` and ``rejected`` columns and no response A/B columns. The shared conversation
        prefix becomes the prompt, and the chosen response is put on side A or B at random
        (fixed by ``seed`` and the pair's content), with the label ``chosen_label``.
    domain : str, optional
        Put every pair in this domain (for a file that holds one domain).
    default_domain : str
        Domain for rows whose domain is missing (each is reported).
    label_map : mapping, optional
        Extra label spellings, e.g. ``{"1": "a", "2": "b", "0": "tie"}``.
    max_response_chars : int
        Longer responses are truncated to this many characters (reported).
    max_input_mb : int
        Stop with :class:`DataError` after this many megabytes of (decompressed) input, so that a
        small compressed file that inflates without end cannot fill the memory.
    config : str, optional
        The configuration (subset) of a ``hf:NAME`` dataset.
    limit : int, optional
        Read only the first ``limit`` rows (a ``hf:NAME`` dataset is then streamed, not downloaded whole).
    strict : bool
        Raise :class:`DataError` on the first row problem instead of skipping the row.
    progress : callable(int), optional
        Called with the number of rows read so far, every 10,000 rows and at the end.

    Returns
    -------
    PairDataset
        The pairs, with :attr:`PairDataset.report` listing every problem met.
    """
    source = os.fspath(source)
    if max_response_chars < 1 or max_input_mb < 1 or (limit is not None and limit < 1):
        raise DataError("max_response_chars, max_input_mb and limit must be at least 1")
    fmt = format or _detect_format(source)
    report = ValidationReport(source=source)
    label_map = {str(k).strip(): v for k, v in (label_map or {}).items()}
    bad_targets = {v for v in label_map.values() if v not in LABEL_VALUES}
    if bad_targets:
        raise DataError(f"--label-map values must be a, b or tie; got {sorted(bad_targets)}")
    parsed_label_cols = _parse_label_cols(label_cols)

    rows: list[dict[str, Any]] = []
    seen_ids: dict[str, str] = {}
    columns: _Columns | None = None
    label_failures: Counter[str] = Counter()
    label_examples: dict[str, Counter[str]] = {}

    def record_problem(problem: Problem) -> None:
        if strict and problem.action != "warning":
            raise DataError(f"{problem.where}: {problem.message}; fix the row, or load without --strict to skip it")
        report.problems.append(problem)

    def resolve(records: list[_Raw]) -> _Columns:
        keys = list(dict.fromkeys(str(k) for raw in records if raw.record is not None for k in raw.record))
        return _resolve_columns(
            keys, source, id_col=id_col, prompt_col=prompt_col, a_col=a_col, b_col=b_col, chosen_col=chosen_col,
            rejected_col=rejected_col, domain_col=domain_col, label_cols=parsed_label_cols, chosen_label=chosen_label)

    def take(raw: _Raw, columns: _Columns) -> None:
        if raw.problem is not None:
            record_problem(raw.problem)
            return
        row = _normalise_row(raw, columns, report_problem=record_problem, seed=seed,
                             domain=domain, default_domain=default_domain, label_map=label_map,
                             max_response_chars=max_response_chars, label_failures=label_failures,
                             label_examples=label_examples)
        if row is None:
            return
        previous = seen_ids.get(row["id"])
        if previous is not None:
            if row.pop("_generated_id"):
                problem = Problem(raw.location, None, f"duplicate pair: same domain, prompt and responses as {previous}", "skipped")
            else:
                problem = Problem(raw.location, columns.id, f"duplicate id: '{row['id']}' already used at {previous}", "skipped")
            record_problem(problem)
            return
        row.pop("_generated_id")
        seen_ids[row["id"]] = raw.location
        rows.append(row)

    # The columns are those of the first records together (a JSON row may lack a key the next ones have).
    buffered: list[_Raw] = []
    for raw in _iter_source(source, fmt, encoding=encoding, split=split, limit=max_input_mb << 20, config=config,
                            rows=limit):
        if limit is not None and report.rows_read >= limit:
            break
        report.rows_read += 1
        if progress is not None and report.rows_read % 10_000 == 0:
            progress(report.rows_read)
        if columns is None:
            buffered.append(raw)
            if sum(r.record is not None for r in buffered) < COLUMN_SAMPLE:
                continue
            columns = resolve(buffered)
            for earlier in buffered:
                take(earlier, columns)
            buffered = []
            continue
        take(raw, columns)
    if columns is None and any(r.record is not None for r in buffered):
        columns = resolve(buffered)
        for earlier in buffered:
            take(earlier, columns)
    elif columns is None:
        for earlier in buffered:
            record_problem(earlier.problem)  # type: ignore[arg-type]

    if progress is not None:
        progress(report.rows_read)
    if report.rows_read == 0:
        raise DataError(f"{source}: no rows found")
    if columns is None:
        raise DataError(f"{source}: no row could be read; first problem: {report.problems[0]}")
    for mechanism, column in columns.labels.items():
        recognised = sum(1 for row in rows if row[LABEL_PREFIX + mechanism] is not None)
        if column and label_failures[mechanism] and not recognised:
            seen = ", ".join(repr(v) for v, _ in label_examples[mechanism].most_common(5))
            raise DataError(
                f"{source}: column '{column}' has no recognised label (values seen: {seen}); "
                "labels must be a, b or tie (or model_a/model_b/...); map yours with "
                "--label-map, e.g. --label-map 1=a --label-map 2=b --label-map 0=tie"
            )
    if columns.domain is None and domain is None:
        report.problems.append(Problem(
            source, None, f"no domain column: every pair is in '{default_domain}' "
            "(name the column with --domain-col, or set one with --domain)", "default"))

    frame = pd.DataFrame(rows, columns=[*CORE_COLUMNS, *(LABEL_PREFIX + m for m in columns.labels)])
    if not len(frame):
        raise DataError(f"{source}: every row was skipped; first problem: {report.problems[0]}")
    dataset = PairDataset(frame, report)
    _warn_summary(report)
    return dataset


def _normalise_row(
    raw: _Raw, columns: _Columns, *, report_problem: Any, seed: int, domain: str | None,
    default_domain: str, label_map: Mapping[str, str], max_response_chars: int,
    label_failures: Counter[str], label_examples: dict[str, Counter[str]],
) -> dict[str, Any] | None:
    record = raw.record or {}
    where = raw.location

    def get(column: str | None) -> Any:
        if column is None:
            return None
        return record.get(column)  # a JSON row may lack a key: the same as an empty value

    def text_of(column: str | None) -> str | None:
        try:
            return _text(get(column))
        except _NotText as exc:
            raise _SkipRow(Problem(where, column, f"not text: {exc}", "skipped")) from None

    try:
        return _normalise_fields(record, where, columns, get, text_of, report_problem=report_problem, seed=seed,
                                 domain=domain, default_domain=default_domain, label_map=label_map,
                                 max_response_chars=max_response_chars, label_failures=label_failures,
                                 label_examples=label_examples)
    except _SkipRow as skip:
        report_problem(skip.problem)
        return None


class _SkipRow(Exception):
    def __init__(self, problem: Problem) -> None:
        self.problem = problem


def _normalise_fields(
    record: dict[str, Any], where: str, columns: _Columns, get: Callable[[str | None], Any],
    text_of: Callable[[str | None], str | None], *, report_problem: Any, seed: int, domain: str | None,
    default_domain: str, label_map: Mapping[str, str], max_response_chars: int,
    label_failures: Counter[str], label_examples: dict[str, Counter[str]],
) -> dict[str, Any] | None:
    labels: dict[str, str | None] = {}
    prompt: str | None
    response_a: str | None
    response_b: str | None
    domain_value = text_of(columns.domain) if domain is None else None
    id_value = text_of(columns.id)
    if columns.layout == "chosen_rejected":
        chosen_raw, rejected_raw = _listlike(get(columns.chosen)), _listlike(get(columns.rejected))
        chosen_msgs, rejected_msgs = _as_messages(chosen_raw), _as_messages(rejected_raw)
        if chosen_msgs is not None and rejected_msgs is not None:
            prefix, chosen, rejected = _split_messages(chosen_msgs, rejected_msgs)
        else:
            chosen_text, rejected_text = text_of(columns.chosen), text_of(columns.rejected)
            for name, value in ((columns.chosen, chosen_text), (columns.rejected, rejected_text)):
                if value is None:
                    raise _SkipRow(Problem(where, name, "empty response" if name in record else
                                           f"missing field: the row has no '{name}'", "skipped"))
            prefix, chosen, rejected = split_shared_prefix(chosen_text or "", rejected_text or "")
        given_prompt = text_of(columns.prompt)
        prompt = given_prompt if given_prompt is not None else prefix
        # The side of the chosen response is fixed by the seed and the content, not the row order.
        chosen_first = _stable_unit(str(seed), prompt, chosen, rejected) < 0.5
        response_a, response_b = (chosen, rejected) if chosen_first else (rejected, chosen)
        a_field, b_field = (columns.chosen, columns.rejected) if chosen_first else (columns.rejected, columns.chosen)
        labels[next(iter(columns.labels))] = "a" if chosen_first else "b"
    else:
        prompt = text_of(columns.prompt)
        response_a, response_b = text_of(columns.a), text_of(columns.b)
        a_field, b_field = columns.a, columns.b
        for mechanism, column in columns.labels.items():
            if column not in record:
                report_problem(Problem(where, column, f"missing field: no '{column}', so no {mechanism} label",
                                       "label dropped"))
                labels[mechanism] = None
                continue
            value = get(column)
            label = _normalise_label(value, label_map)
            if label is False:
                label_failures[mechanism] += 1
                label_examples.setdefault(mechanism, Counter())[str(value)[:40]] += 1
                report_problem(Problem(
                    where, column,
                    f"unknown label: {str(value)[:40]!r}; expected a, b or tie (or pass --label-map)",
                    "label dropped"))
                label = None
            labels[mechanism] = label

    for name, text in ((a_field, response_a), (b_field, response_b)):
        if text is None or not text.strip():
            missing = name is not None and name not in record
            report_problem(Problem(where, name, f"missing field: the row has no '{name}'" if missing
                                   else "empty response", "skipped"))
            return None
    assert response_a is not None and response_b is not None
    if response_a.strip() == response_b.strip():
        report_problem(Problem(where, None, "identical responses: nothing to prefer", "skipped"))
        return None
    if prompt is None or not prompt.strip():
        report_problem(Problem(where, columns.prompt, "empty prompt: the pair is kept without one", "warning"))
        prompt = ""

    response_a = _truncate(response_a, max_response_chars, where, a_field, report_problem)
    response_b = _truncate(response_b, max_response_chars, where, b_field, report_problem)

    if domain is not None:
        pair_domain = domain
    else:
        cleaned, changed = clean_domain(domain_value) if domain_value is not None else ("", False)
        if changed and cleaned:
            report_problem(Problem(where, columns.domain, "control characters removed from the domain name "
                                   f"(kept as '{cleaned[:40]}')", "fixed"))
        if not cleaned:
            if columns.domain is not None:
                report_problem(Problem(where, columns.domain, f"missing domain: '{default_domain}' used", "default"))
            pair_domain = default_domain
        else:
            pair_domain = cleaned

    pair_id = id_value.strip() if id_value is not None else content_id(pair_domain, prompt, response_a, response_b)

    row: dict[str, Any] = {
        "_generated_id": id_value is None,
        "id": pair_id, "domain": pair_domain, "prompt": prompt,
        "response_a": response_a, "response_b": response_b,
    }
    for mechanism, label in labels.items():
        row[LABEL_PREFIX + mechanism] = label
    return row


def _truncate(text: str, limit: int, where: str, field_name: str | None, report_problem: Any) -> str:
    if len(text) <= limit:
        return text
    report_problem(Problem(
        where, field_name,
        f"response too long: {len(text):,} characters, kept the first {limit:,} "
        "(raise the limit with --max-response-chars)", "fixed"))
    return text[:limit]


def _warn_summary(report: ValidationReport) -> None:
    if not report.problems:
        return
    counts = ", ".join(f"{n} × {kind}" for kind, n in report.counts().items())
    warnings.warn(f"{report.source}: {counts} (see the validation report for each row)",
                  DataWarning, stacklevel=3)
