"""Write ``icai_annotated_pairs.json`` with ICAI's own AnnotatedPairs writer (run once; the file is shipped).

The tests read the file without ICAI installed. To make it again, in a separate environment:

    python -m venv /tmp/icai && /tmp/icai/bin/pip install inverse-cai==0.4.8
    /tmp/icai/bin/python tests/data/make_icai_annotated_pairs.py

It takes 6 pairs per domain of preflens's bundled demo data (read as plain JSON, so preflens need not
be installed there), with the dataset's preference as ``preferred_text``, a second annotator column
that ICAI detects by its ``text_a``/``text_b`` values (the preference flipped on every fifth pair),
the domain and a model name as metadata, three ICAI principles whose votes follow the planted
concepts (True when the principle agrees with the preference, False when it disagrees, None when
the two responses do not differ in it, and one "invalid" vote), and one non-preference principle.
The ``created_at`` stamp is fixed so that a rebuild gives the same bytes.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from inverse_cai.data.annotated_pairs_format import create_annotated_pairs, save_annotated_pairs_to_file

HERE = Path(__file__).parent
DEMO = HERE.parents[1] / "src" / "preflens" / "demo_data"
PRINCIPLES = {
    0: ("Select the response that gives concrete numbers, amounts or durations.", "concrete_quantities"),
    1: ("Select the response that asks the user a clarifying question.", "clarifying_question"),
    2: ("Select the response that pads the answer with long, repetitive filler.", "filler"),
}
NONPREF = {0: "Is the response written in English?"}

pairs = [json.loads(line) for line in (DEMO / "pairs.jsonl").read_text(encoding="utf-8").splitlines()]
truth = json.loads((DEMO / "truth.json").read_text(encoding="utf-8"))
chosen, per_domain = [], {}
for pair in pairs:
    if per_domain.get(pair["domain"], 0) < 6:
        per_domain[pair["domain"]] = per_domain.get(pair["domain"], 0) + 1
        chosen.append(pair)

rows, votes, nonpref = [], {}, {}
for i, pair in enumerate(chosen):
    preferred = "text_" + pair["label"]
    rows.append({"text_a": pair["response_a"], "text_b": pair["response_b"], "input": pair["prompt"],
                 "preferred_text": preferred, "model_a": "demo-writer", "model_b": "demo-writer",
                 "domain": pair["domain"],
                 "second_rater": preferred if i % 5 else {"text_a": "text_b", "text_b": "text_a"}[preferred]})
    features = truth["pairs"][pair["id"]]["features"]
    sign = 1 if pair["label"] == "a" else -1
    votes[i] = {k: (None if not features.get(name) else features[name] * sign > 0)
                for k, (_, name) in PRINCIPLES.items()}
    nonpref[i] = {0: True}
votes[3][0] = "invalid"  # a vote that failed for technical reasons

document = create_annotated_pairs(pd.DataFrame(rows), "preflens demo (ICAI format test)",
                                  principle_index_to_text={k: text for k, (text, _) in PRINCIPLES.items()},
                                  comparison_votes=votes, nonpref_principle_index_to_text=NONPREF,
                                  nonpref_comparison_votes=nonpref)
document["metadata"]["created_at"] = "2026-11-24T00:00:00Z"
save_annotated_pairs_to_file(document, HERE / "icai_annotated_pairs.json")
print(f"wrote {HERE / 'icai_annotated_pairs.json'}: {len(document['comparisons'])} comparisons, "
      f"{len(document['annotators'])} annotators")
