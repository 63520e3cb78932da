"""Open a preflens export with Feedback Forensics' own loader (run by hand; not part of the test run).

Feedback Forensics pulls in gradio, jupyter and langchain, so it is not a test dependency. To check:

    python -m venv /tmp/ff && /tmp/ff/bin/pip install feedback-forensics==0.5.0
    preflens import-ap tests/data/icai_annotated_pairs.json --out /tmp/ap-run
    preflens export-ap /tmp/ap-run /tmp/ap-run.json
    /tmp/ff/bin/python tests/data/check_with_feedback_forensics.py /tmp/ap-run.json

It prints the comparisons and columns Feedback Forensics read, the annotator kinds it recognised, and
fails if a comparison or a principle is missing.
"""

from __future__ import annotations

import json
import pathlib
import sys

from feedback_forensics.data.loader import get_votes_dict

path = pathlib.Path(sys.argv[1])
document = json.loads(path.read_text(encoding="utf-8"))
votes = get_votes_dict(path)
principles = [a for a in document["annotators"].values() if a["type"] == "principle"]
print(f"{path}: {votes['df'].shape[0]} comparisons read of {len(document['comparisons'])}; "
      f"{len(votes['shown_annotator_rows'])} principles of {len(principles)}")
print("annotators:", sorted({m["variant"] for m in votes["annotator_metadata"].values()}))
assert votes["df"].shape[0] == len(document["comparisons"])
assert len(votes["shown_annotator_rows"]) == len(principles)
