"""Loading every supported format, the chosen/rejected layout, and every kind of bad input."""

from __future__ import annotations

import json
import warnings

import pandas as pd
import pytest

from preflens import DataError, DataWarning, load_pairs
from preflens.data import LABEL_PREFIX, split_shared_prefix

ROWS = [
    {"id": "r1", "domain": "cooking", "prompt": "How long to boil an egg?", "response_a": "9 minutes.",
     "response_b": "A while.", "label": "a"},
    {"id": "r2", "domain": "travel", "prompt": "Best time to visit Kyoto?", "response_a": "Any time.",
     "response_b": "Spring or autumn.", "label": "b"},
    {"id": "r3", "domain": "travel", "prompt": "Is Rome walkable?", "response_a": "Yes, mostly.",
     "response_b": "Yes.", "label": "tie"},
]


def load_quiet(*args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataWarning)
        return load_pairs(*args, **kwargs)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def canonical(dataset):
    return dataset.frame[["id", "domain", "prompt", "response_a", "response_b", LABEL_PREFIX + "human"]].to_dict("records")


EXPECTED = [
    {"id": r["id"], "domain": r["domain"], "prompt": r["prompt"], "response_a": r["response_a"],
     "response_b": r["response_b"], LABEL_PREFIX + "human": r["label"]}
    for r in ROWS
]


@pytest.mark.parametrize("fmt", ["jsonl", "json", "csv", "tsv", "parquet", "hf-disk"])
def test_every_format_gives_the_same_pairs(tmp_path, fmt):
    frame = pd.DataFrame(ROWS)
    if fmt == "jsonl":
        path = write_jsonl(tmp_path / "p.jsonl", ROWS)
    elif fmt == "json":
        path = tmp_path / "p.json"
        path.write_text(json.dumps(ROWS))
    elif fmt == "csv":
        path = tmp_path / "p.csv"
        frame.to_csv(path, index=False)
    elif fmt == "tsv":
        path = tmp_path / "p.tsv"
        frame.to_csv(path, index=False, sep="\t")
    elif fmt == "parquet":
        path = tmp_path / "p.parquet"
        frame.to_parquet(path)
    else:
        datasets = pytest.importorskip("datasets")
        path = tmp_path / "saved"
        datasets.Dataset.from_pandas(frame).save_to_disk(str(path))
    dataset = load_pairs(path)
    assert canonical(dataset) == EXPECTED
    assert dataset.report.problems == []
    assert dataset.mechanisms == ["human"]


def test_hf_datasetdict_needs_a_known_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    frame = pd.DataFrame(ROWS)
    dd = datasets.DatasetDict({"test": datasets.Dataset.from_pandas(frame)})
    dd.save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="splits"):
        load_pairs(tmp_path / "dd")
    assert len(load_pairs(tmp_path / "dd", split="test")) == 3


def test_column_mapping_and_several_mechanisms(tmp_path):
    rows = [{"q": r["prompt"], "x": r["response_a"], "y": r["response_b"], "area": r["domain"],
             "crowd": r["label"], "judge": "model_b"} for r in ROWS]
    path = write_jsonl(tmp_path / "custom.jsonl", rows)
    dataset = load_pairs(path, prompt_col="q", a_col="x", b_col="y", domain_col="area",
                         label_cols=["human=crowd", "gpt=judge"])
    assert dataset.mechanisms == ["human", "gpt"]
    assert list(dataset.labels("human")) == ["a", "b", "tie"]
    assert list(dataset.labels("gpt")) == ["b", "b", "b"]
    assert dataset.domains == ["cooking", "travel"]
    # ids come from the content when there is no id column, and are stable
    again = load_pairs(path, prompt_col="q", a_col="x", b_col="y", domain_col="area", label_cols=["crowd"])
    assert list(again.frame["id"]) == list(dataset.frame["id"])


def test_missing_column_names_the_columns_and_the_option(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{"question": "q", "r1": "a", "r2": "b"}])
    with pytest.raises(DataError) as info:
        load_pairs(path)
    message = str(info.value)
    assert "p.jsonl" in message and "r1, r2" in message and "--a-col" in message


def test_hh_rlhf_layout_splits_the_prompt_and_randomises_the_side(tmp_path):
    rows = []
    for i in range(40):
        prompt = f"\n\nHuman: question number {i}?\n\nAssistant:"
        rows.append({"chosen": prompt + f" A careful answer {i}.", "rejected": prompt + f" A sloppy answer {i}."})
    path = write_jsonl(tmp_path / "hh.jsonl", rows)
    dataset = load_pairs(path)
    first = dataset.frame.iloc[0]
    assert first["prompt"] == "Human: question number 0?\n\nAssistant:"
    assert {first["response_a"], first["response_b"]} == {"A careful answer 0.", "A sloppy answer 0."}
    labels = dataset.labels("human")
    assert set(labels) == {"a", "b"}
    for _, row in dataset.frame.iterrows():  # the label always points at the chosen response
        chosen = row["response_a"] if row[LABEL_PREFIX + "human"] == "a" else row["response_b"]
        assert chosen.startswith("A careful")
    assert list(load_pairs(path).labels("human")) == list(labels)  # same seed, same sides
    assert list(load_pairs(path, seed=1).labels("human")) != list(labels)


def test_chosen_rejected_as_message_lists(tmp_path):
    user = {"role": "user", "content": "Name a prime."}
    rows = [{"prompt": "Name a prime.", "chosen": [user, {"role": "assistant", "content": "7"}],
             "rejected": [user, {"role": "assistant", "content": "9"}]}]
    dataset = load_pairs(write_jsonl(tmp_path / "uf.jsonl", rows))
    row = dataset.frame.iloc[0]
    assert row["prompt"] == "Name a prime."
    assert {row["response_a"], row["response_b"]} == {"7", "9"}


def test_split_shared_prefix_without_marker_keeps_whole_texts():
    assert split_shared_prefix("The answer is 4", "The answer is 5") == ("", "The answer is 4", "The answer is 5")


def test_bad_rows_are_reported_and_never_shift_good_rows(tmp_path):
    good = ROWS
    lines = [
        json.dumps(good[0]),
        json.dumps({**good[0], "id": "e1", "response_b": "   "}),              # empty response
        json.dumps({**good[0], "id": "s1", "response_b": good[0]["response_a"]}),  # identical
        json.dumps({**good[1], "id": "r1"}),                                  # duplicate id
        json.dumps({**good[1], "id": "u1", "label": "maybe"}),                # unknown label
        json.dumps({**good[1], "id": "d1", "domain": None}),                  # missing domain
        "{not json",                                                          # malformed line
        "[1, 2]",                                                             # not an object
        json.dumps(good[1]),
        json.dumps(good[2]),
    ]
    path = tmp_path / "bad.jsonl"
    data = "\n".join(lines).encode() + b"\n" + b'{"id": "x", "prompt": "caf\xe9"}\n'  # latin-1 byte
    path.write_bytes(data)
    with pytest.warns(DataWarning):
        dataset = load_pairs(path)
    frame = dataset.frame.set_index("id")
    assert list(frame.index) == ["r1", "u1", "d1", "r2", "r3"]
    assert frame.loc["r2", "response_b"] == "Spring or autumn."  # untouched by the bad rows above it
    assert pd.isna(frame.loc["u1", LABEL_PREFIX + "human"])
    assert frame.loc["d1", "domain"] == "default"
    problems = {(p.location, p.action): p for p in dataset.report.problems}
    assert problems[("bad.jsonl line 2", "skipped")].message == "empty response"
    assert problems[("bad.jsonl line 2", "skipped")].field == "response_b"
    assert "identical" in problems[("bad.jsonl line 3", "skipped")].message
    assert "duplicate id: 'r1' already used at bad.jsonl line 1" in problems[("bad.jsonl line 4", "skipped")].message
    assert "unknown label: 'maybe'" in problems[("bad.jsonl line 5", "label dropped")].message
    assert problems[("bad.jsonl line 6", "default")].field == "domain"
    assert "not valid JSON" in problems[("bad.jsonl line 7", "skipped")].message
    assert "not a JSON object" in problems[("bad.jsonl line 8", "skipped")].message
    assert "not valid utf-8: byte 0xe9" in problems[("bad.jsonl line 11", "skipped")].message
    assert dataset.report.rows_read == 11 and dataset.report.rows_skipped == 6


def test_strict_mode_stops_at_the_first_bad_row(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [ROWS[0], {**ROWS[1], "response_a": ""}])
    with pytest.raises(DataError, match=r"p.jsonl line 2, field 'response_a': empty response"):
        load_pairs(path, strict=True)


def test_non_utf8_csv_names_line_and_fix(tmp_path):
    path = tmp_path / "p.csv"
    path.write_bytes(b"prompt,response_a,response_b,label\nq,a,b,a\nq2,caf\xe9,b,b\n")
    with pytest.raises(DataError) as info:
        load_pairs(path)
    assert "line 3" in str(info.value) and "--encoding" in str(info.value)
    dataset = load_pairs(path, encoding="latin-1")
    assert dataset.frame.iloc[1]["response_a"] == "café"


def test_five_megabyte_response_is_truncated_and_reported(tmp_path):
    huge = "word " * 1_000_000
    frame = pd.DataFrame([{**ROWS[0], "response_a": huge}, ROWS[1]])
    path = tmp_path / "big.csv"
    frame.to_csv(path, index=False)
    dataset = load_quiet(path)
    assert len(dataset) == 2
    assert len(dataset.frame.iloc[0]["response_a"]) == 200_000
    (problem,) = dataset.report.problems
    assert problem.action == "fixed" and "5,000,000 characters" in problem.message
    assert problem.location == "big.csv row 1" and problem.field == "response_a"
    assert len(load_pairs(path, max_response_chars=6_000_000).frame.iloc[0]["response_a"]) == 5_000_000


def test_labels_nobody_understands_are_a_file_error_with_the_fix(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [{**r, "label": i % 2} for i, r in enumerate(ROWS)])
    with pytest.raises(DataError, match="--label-map"):
        load_quiet(path)
    dataset = load_pairs(path, label_map={"0": "a", "1": "b"})
    assert list(dataset.labels("human")) == ["a", "b", "a"]


def test_label_aliases_and_missing_labels(tmp_path):
    labels = ["model_a", "Tie (bothbad)", None]
    path = write_jsonl(tmp_path / "p.jsonl", [{**r, "winner": lab} for r, lab in zip(ROWS, labels)])
    dataset = load_pairs(path, label_cols=["winner"])
    assert list(dataset.labels("winner").fillna("missing")) == ["a", "tie", "missing"]


def test_malformed_csv_and_unknown_extension(tmp_path):
    bad = tmp_path / "p.csv"
    bad.write_text('prompt,response_a,response_b\n"q,a,b\n')
    with pytest.raises(DataError, match="p.csv"):
        load_pairs(bad)
    with pytest.raises(DataError, match="--format"):
        load_pairs(tmp_path / "p.xlsx")
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no rows"):
        load_pairs(empty)


def test_no_domain_column_uses_default_with_a_note(tmp_path):
    rows = [{k: v for k, v in r.items() if k != "domain"} for r in ROWS]
    with pytest.warns(DataWarning, match="no domain column"):
        dataset = load_pairs(write_jsonl(tmp_path / "p.jsonl", rows))
    assert dataset.domains == ["default"]
    assert load_pairs(tmp_path / "p.jsonl", domain="legal").domains == ["legal"]


def test_summary_and_parquet_round_trip(tmp_path):
    dataset = load_pairs(write_jsonl(tmp_path / "p.jsonl", ROWS))
    summary = dataset.summary()
    assert summary["domains"] == {"cooking": 1, "travel": 2}
    assert summary["labels"]["human"] == {"a": 1, "b": 1, "tie": 1, "missing": 0}
    dataset.to_parquet(tmp_path / "pairs.parquet")
    again = type(dataset).read_parquet(tmp_path / "pairs.parquet")
    assert canonical(again) == canonical(dataset)


def test_hub_dataset_by_name_goes_through_load_dataset(monkeypatch):
    datasets = pytest.importorskip("datasets")
    calls = []

    def fake_load_dataset(name, config=None, *, split=None, streaming=False):
        calls.append((name, split))
        return datasets.Dataset.from_pandas(pd.DataFrame(ROWS))

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    dataset = load_pairs("hf:someone/prefs", split="test")
    assert calls == [("someone/prefs", "test")] and canonical(dataset) == EXPECTED

    def offline(name, config=None, *, split=None, streaming=False):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="save_to_disk"):
        load_pairs("hf:someone/prefs")


def _hub_layout_repo(folder):
    """A folder laid out like a hub dataset repository: two subsets, each with train and test Parquet files."""
    rows = [{"prompt": f"q{i}", "chosen": f"good answer {i}", "rejected": f"bad {i}", "category": "chat"}
            for i in range(40)]
    for subset in ("easy", "hard"):
        (folder / subset).mkdir(parents=True)
        frame = pd.DataFrame(rows).assign(category=subset)
        frame.iloc[:30].to_parquet(folder / subset / "train-00000-of-00001.parquet")
        frame.iloc[30:].to_parquet(folder / subset / "test-00000-of-00001.parquet")
    (folder / "README.md").write_text(
        "---\nconfigs:\n"
        + "".join(f"- config_name: {s}\n  data_files:\n  - split: train\n    path: {s}/train-*\n"
                  f"  - split: test\n    path: {s}/test-*\n" for s in ("easy", "hard"))
        + "---\n# prefs\n")
    return folder


def test_a_local_hub_layout_repository_with_subset_split_and_limit(tmp_path):
    pytest.importorskip("datasets")
    repo = _hub_layout_repo(tmp_path / "repo")
    hard = load_pairs(f"hf:{repo}", config="hard", split="test", domain_col="category")
    assert len(hard) == 10 and set(hard.frame["domain"]) == {"hard"} and hard.mechanisms == ["human"]
    streamed = load_pairs(f"hf:{repo}", config="easy", split="train", limit=7, domain_col="category")
    assert len(streamed) == 7 and streamed.report.rows_read == 7 and set(streamed.frame["domain"]) == {"easy"}
    assert list(streamed.frame["prompt"]) == [f"q{i}" for i in range(7)]
    with pytest.raises(DataError, match="subset 'nope'"):
        load_pairs(f"hf:{repo}", config="nope")


def test_limit_reads_only_the_first_rows_of_any_source(tmp_path):
    datasets = pytest.importorskip("datasets")
    path = tmp_path / "p.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    assert len(load_pairs(path, limit=2)) == 2
    datasets.Dataset.from_pandas(pd.DataFrame(ROWS)).save_to_disk(str(tmp_path / "disk"))
    assert load_pairs(tmp_path / "disk", limit=1).report.rows_read == 1
