"""A corpus of malformed and hostile input files, written on demand, with what preflens must do with each.

Each :class:`Case` is one file (or one file with hostile options) and the expected outcome: the exit
status, the pairs kept when it is readable, and a phrase that the error line or a listed problem
holds. ``tests/test_bad_inputs.py`` runs every case through the command line.
"""

from __future__ import annotations

import gzip
import json
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

GOOD = 8
"""Good pairs in every file that has good rows."""


def good(i: int, **change: object) -> dict[str, object]:
    row: dict[str, object] = {"id": f"p{i}", "domain": "cooking" if i % 2 else "travel", "prompt": f"question {i}",
                              "response_a": f"answer A to {i}", "response_b": f"answer B to {i}",
                              "label": "a" if i % 3 else "b"}
    row.update(change)
    return row


def lines(rows: list[object]) -> bytes:
    return b"".join((r if isinstance(r, bytes) else json.dumps(r).encode()) + b"\n" for r in rows)


def with_bad(bad: bytes | dict[str, object], at: int = 2) -> bytes:
    """The good rows with one bad line inserted at line ``at``."""
    rows: list[object] = [good(i) for i in range(GOOD)]
    rows.insert(at - 1, bad)
    return lines(rows)


def csv_text(rows: list[dict[str, object]], columns: list[str] | None = None) -> str:
    return pd.DataFrame(rows, columns=columns).to_csv(index=False)


@dataclass
class Case:
    """One input, how it is given, and what must happen."""

    name: str
    content: bytes | Callable[[Path], None]
    args: tuple[str, ...] = ()
    exit: int = 0
    kept: int | None = None
    says: str = ""
    command: str = "validate"
    text_output: bool = False  # validate without --json (for the terminal-safety cases)
    memory_mb: float | None = None  # bound on the peak of Python allocations while it runs
    extra: dict[str, object] = field(default_factory=dict)

    def write(self, folder: Path) -> Path:
        path = folder / self.name
        if callable(self.content):
            self.content(path)
        else:
            path.write_bytes(self.content)
        return path


def _gzip_bomb(path: Path, size: int = 1 << 30) -> None:
    """A small .gz that inflates to ``size`` bytes of zeros on one line (about 1 MB compressed)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    block = b"0" * (1 << 20)
    with path.open("wb") as handle:
        for _ in range(size >> 20):
            handle.write(compressor.compress(block))
        handle.write(compressor.flush())


def _parquet(frame: pd.DataFrame) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        frame.to_parquet(path, index=False)

    return write


def _binary_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [good(i) for i in range(GOOD)]
    table = pa.table({
        "prompt": [r["prompt"] for r in rows],
        "response_a": pa.array([f"café {i}".encode() for i in range(GOOD)], pa.binary()),
        "response_b": pa.array([f"thé {i}".encode() for i in range(GOOD)], pa.binary()),
        "label": [r["label"] for r in rows],
    })
    pq.write_table(table, path)


def _folder(path: Path) -> None:
    path.mkdir()
    (path / "notes.txt").write_text("not a dataset")


def _truncated_gzip(path: Path) -> None:
    data = gzip.compress(lines([good(i) for i in range(GOOD)]))
    path.write_bytes(data[: len(data) // 2])


def _many_problems(path: Path) -> None:
    same = [json.dumps(good(i, response_b=f"answer A to {i}")).encode() for i in range(100, 100_100)]
    path.write_bytes(lines([good(i) for i in range(GOOD)]) + b"\n".join(same) + b"\n")


def _wide_row(path: Path) -> None:
    row = {f"column_{i:05d}_with_a_long_name": i for i in range(50_000)}
    path.write_bytes(lines([row]))


def _run_folder_with(run_json: bytes) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        path.mkdir()
        (path / "run.json").write_bytes(run_json)

    return write


CONCEPTS_DATA = lines([good(i) for i in range(GOOD)])

CASES: list[Case] = [
    # ---- readable files, with and without bad rows
    Case("good.jsonl", lines([good(i) for i in range(GOOD)]), kept=GOOD),
    Case("first_row_lacks_label_and_domain.jsonl",
         lines([{k: v for k, v in good(0).items() if k not in ("label", "domain")}] + [good(i) for i in range(1, GOOD)]),
         kept=GOOD, says="missing field: no 'label'"),
    Case("bom.jsonl", b"\xef\xbb\xbf" + lines([good(i) for i in range(GOOD)]), kept=GOOD),
    Case("bom.csv", b"\xef\xbb\xbf" + csv_text([good(i) for i in range(GOOD)]).encode(), kept=GOOD),
    Case("bare_cr.jsonl", lines([good(i) for i in range(GOOD)]).replace(b"\n", b"\r"), kept=GOOD),
    Case("crlf.jsonl", lines([good(i) for i in range(GOOD)]).replace(b"\n", b"\r\n"), kept=GOOD),
    Case("value_true.jsonl", with_bad(good(90, response_a=True)), kept=GOOD, says="not text: a boolean"),
    Case("value_object.jsonl", with_bad(good(90, response_b={"x": 1})), kept=GOOD, says="not text: an object"),
    Case("value_infinity.jsonl", with_bad(json.dumps(good(90)).replace('"answer A to 90"', "Infinity").encode()),
         kept=GOOD, says="infinite number"),
    Case("value_list.jsonl", with_bad(good(90, response_a=["a", "b"])), kept=GOOD, says="not text: a list"),
    Case("content_parts.jsonl", lines([good(i, response_a=[{"type": "text", "text": f"part one {i}"},
                                                           {"type": "text", "text": "part two"}])
                                       for i in range(GOOD)]), kept=GOOD),
    Case("messages.jsonl", lines([good(i, prompt=[{"role": "user", "content": f"hi {i}"}]) for i in range(GOOD)]),
         kept=GOOD),
    Case("lone_surrogate.jsonl", with_bad(json.dumps(good(90)).replace("answer A", "\\ud800 answer A").encode()),
         kept=GOOD, says="unpaired surrogate"),
    Case("huge_integer.jsonl", with_bad(json.dumps(good(90))[:-1].encode() + b', "n": ' + b"9" * 5000 + b"}"),
         kept=GOOD, says="not readable"),
    Case("deep_nesting.jsonl", with_bad(b"[" * 100_000 + b"]" * 100_000), kept=GOOD, says="nested too deeply"),
    Case("array_line.jsonl", with_bad(b"[1, 2]"), kept=GOOD, says="not a JSON object: got an array"),
    Case("broken_line.jsonl", with_bad(b'{"prompt": "q", "response_a": '), kept=GOOD, says="not valid JSON"),
    Case("not_utf8_line.jsonl", with_bad(b'{"prompt": "caf\xe9"}'), kept=GOOD, says="not valid utf-8"),
    Case("duplicate_id.jsonl", with_bad(good(90, id="p0")), kept=GOOD, says="duplicate id"),
    Case("unknown_label_value.jsonl", with_bad(good(90, label="maybe")), kept=GOOD + 1, says="unknown label"),
    Case("empty_response.jsonl", with_bad(good(90, response_b="   ")), kept=GOOD, says="empty response"),
    Case("identical_responses.jsonl", with_bad(good(90, response_b="answer A to 90")), kept=GOOD,
         says="identical responses"),
    Case("wrapped_object.json", json.dumps({"data": [good(i) for i in range(GOOD)]}).encode(), kept=GOOD),
    Case("array_with_a_number.json", json.dumps([good(i) for i in range(GOOD)] + [7]).encode(), kept=GOOD,
         says="not a JSON object: got a number"),
    Case("answer_1_2.csv", csv_text([{"prompt": f"q{i}", "answer_1": f"x{i}", "answer_2": f"y{i}", "winner": "a"}
                                     for i in range(GOOD)]).encode(), kept=GOOD),
    Case("latin1.csv", csv_text([good(i, prompt=f"café {i}") for i in range(GOOD)]).encode("latin-1"),
         args=("--encoding", "latin-1"), kept=GOOD),
    Case("long_response.jsonl", lines([good(i, response_a="x" * 50 + str(i)) for i in range(GOOD)]),
         args=("--max-response-chars", "10"), kept=GOOD, says="response too long"),
    Case("binary.parquet", _binary_parquet, kept=GOOD),
    Case("struct_parts.parquet", _parquet(pd.DataFrame(
        [good(i, response_a={"type": "text", "text": f"struct {i}"}) for i in range(GOOD)])), kept=GOOD),
    Case("many_problems.jsonl", _many_problems, kept=GOOD, says="identical responses", memory_mb=900,
         extra={"problems_total": 100_000}),
    Case("domain_markup.jsonl", lines([good(i, domain="[/]" if i == 0 else "[bold]x") for i in range(GOOD)]),
         kept=GOOD, text_output=True, says="[/]"),
    Case("domain_escape_codes.jsonl", lines([good(i, domain="\x1b]0;pwned\x07evil\x1b[2J") for i in range(GOOD)]),
         kept=GOOD, text_output=True, says="control characters removed"),
    # ---- files that cannot be read at all: one line naming the file
    Case("top_level_object.json", json.dumps({"meta": 1, "name": "x"}).encode(), exit=1, says="is one JSON object"),
    Case("bad_quote.csv", b'prompt,response_a,response_b\n"q1,a,b\nq2,"a"b",c\n', exit=1, says="bad_quote.csv"),
    Case("empty.csv", b"", exit=1, says="the file is empty"),
    Case("empty.jsonl", b"", exit=1, says="no rows found"),
    Case("only_newlines.jsonl", b"\n" * 3_000_000, exit=1, says="no rows found"),
    Case("all_rows_bad.jsonl", b"[1]\n[2]\n", exit=1, says="no row could be read"),
    Case("no_response_b.csv", csv_text([{"prompt": "q", "response_a": "a", "respnse_b": "b"}]).encode(), exit=1,
         says="did you mean 'respnse_b'"),
    Case("misspelt_option.csv", csv_text([good(i) for i in range(GOOD)]).encode(), args=("--a-col", "respons_a"),
         exit=1, says="did you mean 'response_a'"),
    Case("wide_row.jsonl", _wide_row, exit=1, says="more"),
    Case("list_column.parquet", _parquet(pd.DataFrame([good(i, response_a=["a", "b"]) for i in range(GOOD)])),
         exit=1, says="not text: a list"),
    Case("garbage.parquet", b"PAR1 this is not parquet", exit=1, says="not a readable Parquet file"),
    Case("latin1_as_utf8.csv", csv_text([good(i, prompt=f"café {i}") for i in range(GOOD)]).encode("latin-1"),
         exit=1, says="not valid utf-8"),
    Case("unknown_encoding.jsonl", lines([good(i) for i in range(GOOD)]), args=("--encoding", "nope"), exit=1,
         says="unknown text encoding"),
    Case("no_labels_recognised.csv", csv_text([good(i, label="maybe") for i in range(GOOD)]).encode(), exit=1,
         says="no recognised label"),
    Case("truncated.jsonl.gz", _truncated_gzip, exit=1, says="cannot be read"),
    Case("gzip_bomb.jsonl.gz", _gzip_bomb, exit=1, says="longer than 64 MB", memory_mb=300),
    Case("gzip_bomb_small_limit.jsonl.gz", _gzip_bomb, args=("--max-input-mb", "100"), exit=1,
         says="more than 100 MB", memory_mb=300),
    Case("a_folder", _folder, exit=1, says="not a Hugging Face dataset"),
    Case("no_extension", lines([good(0)]), exit=1, says="cannot tell the format"),
    # ---- hostile options
    Case("traversal_chosen_label.jsonl", lines([{"chosen": f"c{i}", "rejected": f"r{i}"} for i in range(GOOD)]),
         args=("--chosen-label", "../../x"), exit=1, says="cannot be used"),
    Case("slash_mechanism.jsonl", lines([good(i) for i in range(GOOD)]), args=("--label-col", "a/b=label"), exit=1,
         says="cannot be used"),
    Case("zero_max_response_chars.jsonl", lines([good(i) for i in range(GOOD)]), args=("--max-response-chars", "0"),
         exit=2, says="--max-response-chars"),
    Case("negative_max_response_chars.jsonl", lines([good(i) for i in range(GOOD)]),
         args=("--max-response-chars", "-5"), exit=2, says="--max-response-chars"),
    # ---- concept lists, checked before any LLM call (the LLM is a closed port: a call would fail)
    Case("concepts_billion_laughs.yaml", (
        'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
        + "".join(f"{c}: &{c} [{','.join(['*' + p] * 9)}]\n" for p, c in zip("abcdefgh", "bcdefghi"))
        + "concepts: [{name: X, definition: *i}]\n").encode(), command="run", exit=1, says="anchors and aliases"),
    Case("concepts_description.yaml", b"concepts:\n  - name: Clarity\n    description: clear steps\n", command="run",
         exit=1, says="line 3: unknown key 'description' in a concept; did you mean 'definition'"),
    Case("concepts_reserved.yaml", b"- name: id\n  definition: the id\n", command="run", exit=1, says="is reserved"),
    Case("concepts_empty.yaml", b"concepts: []\n", command="run", exit=1, says="the concept list is empty"),
    Case("concepts_unknown_domain.yaml", b"- name: Tips\n  definition: gives tips\n  domains: [cooking, gardening]\n",
         command="run", exit=1, says="'gardening', which the data does not have"),
    Case("concepts_python_tag.yaml", b"- !!python/object/apply:os.system ['echo hi']\n", command="run", exit=1,
         says="not valid YAML"),
    # ---- run state that is damaged or in the way
    Case("truncated_run_json", _run_folder_with(b'{"format": "preflens-run/1", "stages": {"ing'), command="out",
         exit=1, says="not a readable run record"),
    Case("out_under_a_file", lambda path: path.write_text("a file"), command="out_under", exit=1,
         says="a part of this path is a file"),
    Case("garbage_cache.sqlite", b"this is not a database" * 100, command="cache", exit=1,
         says="cannot be used as the LLM cache"),
    Case("cache_under_a_file", lambda path: path.write_text("a file"), command="cache_under", exit=1,
         says="cannot be used as the LLM cache"),
]
