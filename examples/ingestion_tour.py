"""Load each supported format, then show what happens to each kind of bad input.

Run: python examples/ingestion_tour.py   (needs the 'hf' extra for the Hugging Face part)
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import pandas as pd

from preflens import DataError, load_pairs

ROWS = [
    {"id": "r1", "domain": "cooking", "prompt": "How long to boil an egg?", "response_a": "9 minutes.",
     "response_b": "A while.", "label": "a"},
    {"id": "r2", "domain": "travel", "prompt": "Best time to visit Kyoto?", "response_a": "Any time.",
     "response_b": "Spring or autumn.", "label": "b"},
]


def show(title: str, source, **options) -> None:
    print(f"\n== {title}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            dataset = load_pairs(source, **options)
    except DataError as exc:
        print(f"   DataError: {exc}")
        return
    print(f"   {len(dataset)} pairs kept of {dataset.report.rows_read} rows; domains {dataset.domains}; "
          f"labels {dataset.summary()['labels']}")
    for problem in dataset.report.problems:
        print(f"   - {problem}")


def main() -> None:
    folder = Path(tempfile.mkdtemp(prefix="preflens-tour-"))
    frame = pd.DataFrame(ROWS)
    (folder / "p.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    frame.to_csv(folder / "p.csv", index=False)
    frame.to_parquet(folder / "p.parquet")
    show("JSON Lines", folder / "p.jsonl")
    show("CSV", folder / "p.csv")
    show("Parquet", folder / "p.parquet")
    try:
        import datasets

        datasets.Dataset.from_pandas(frame).save_to_disk(str(folder / "hf"))
        show("Hugging Face dataset saved with save_to_disk", folder / "hf")
    except ImportError:
        print("\n== Hugging Face: install preflens[hf] to try it")

    hh = [{"chosen": "\n\nHuman: Name a prime?\n\nAssistant: 7 is prime.",
           "rejected": "\n\nHuman: Name a prime?\n\nAssistant: 9 is prime."}]
    (folder / "hh.jsonl").write_text("".join(json.dumps(r) + "\n" for r in hh))
    show("chosen/rejected (HH-RLHF layout)", folder / "hh.jsonl")

    bad = [
        {**ROWS[0], "id": "empty", "response_b": ""},
        {**ROWS[0], "id": "same", "response_b": ROWS[0]["response_a"]},
        ROWS[0], {**ROWS[1], "id": "r1"},
        {**ROWS[1], "id": "odd-label", "label": "maybe"},
        {**ROWS[1], "id": "no-domain", "domain": None},
        {**ROWS[1], "id": "huge", "response_a": "x" * 5_000_000},
    ]
    raw = "".join(json.dumps(r) + "\n" for r in bad).encode() + b'{"id": "latin", "prompt": "caf\xe9"}\n'
    (folder / "bad.jsonl").write_bytes(raw)
    show("every kind of bad row in one JSONL file", folder / "bad.jsonl")
    show("the same file with --strict", folder / "bad.jsonl", strict=True)
    (folder / "bad.csv").write_bytes(b"prompt,response_a,response_b,label\nq,a,b,a\nq2,caf\xe9,b,b\n")
    show("non-UTF-8 bytes in a CSV", folder / "bad.csv")
    (folder / "cols.csv").write_text("question,r1,r2\nq,a,b\n")
    show("columns that are not found", folder / "cols.csv")
    (folder / "nums.jsonl").write_text("".join(json.dumps({**r, "label": i}) + "\n" for i, r in enumerate(ROWS)))
    show("labels nobody understands", folder / "nums.jsonl")
    show("... mapped with label_map", folder / "nums.jsonl", label_map={"0": "a", "1": "b"})


if __name__ == "__main__":
    main()
