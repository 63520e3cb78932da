"""End to end through the real embedded model (Qwen2.5-Coder-1.5B-Instruct GGUF on llama.cpp).

Needs the 'local' extra. Skipped when it is missing, unless PREFLENS_REQUIRE_LOCAL_MODEL=1 (as in CI),
which turns the skip into a failure so that CI cannot pass without running these.
"""

from __future__ import annotations

import hashlib
import os

import pytest
from pydantic import BaseModel

pytestmark = pytest.mark.local_model

try:
    import xllamacpp  # noqa: F401

    from preflens.llm.model_files import part_paths

    part_paths()
    HAVE_MODEL = True
except Exception:  # the runtime or a model wheel is missing
    HAVE_MODEL = False

if not HAVE_MODEL:
    if os.environ.get("PREFLENS_REQUIRE_LOCAL_MODEL") == "1":
        raise RuntimeError("PREFLENS_REQUIRE_LOCAL_MODEL=1 but the embedded model is not installed "
                           "(pip install 'preflens[local]')")
    pytest.skip("the embedded model is not installed (pip install 'preflens[local]')", allow_module_level=True)

from preflens import demo_data_path, load_pairs  # noqa: E402
from preflens.llm import LLMCache, LLMClient, LLMRequest, Message, get_llm, structured_request  # noqa: E402
from preflens.llm.model_files import MODEL_SHA256, embedded_model_path  # noqa: E402


@pytest.fixture(scope="module")
def model_home(tmp_path_factory):
    """A preflens home where the model is assembled from its wheels once for this file (1.1 GB on disk)."""
    home = tmp_path_factory.mktemp("home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFLENS_HOME", str(home))
        path = embedded_model_path()
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        assert digest == MODEL_SHA256
    return home


@pytest.fixture(scope="module")
def provider(model_home):
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("PREFLENS_HOME", str(model_home))
        local = get_llm("local")  # the default provider when nothing else is configured
        local._ensure_server()  # loaded from this home now, not assembled again under a test's own home
        yield local


def yes_no(question: str) -> LLMRequest:
    return LLMRequest(messages=(Message(role="user", content=question + " Answer Yes or No."),),
                      max_tokens=2, logprobs=True, top_logprobs=5, template_version="test/1")


def test_default_llm_is_the_embedded_model(provider):
    assert provider.name == "local" and provider.spec == "local"


def test_yes_no_answers_and_logprobs_are_real(provider, tmp_path):
    client = LLMClient(provider, cache=LLMCache(tmp_path / "c.sqlite"))
    yes, no = client.map([yes_no("Is Paris the capital of France?"), yes_no("Is the Moon made of cheese?")])
    assert yes.text.startswith("Yes") and no.text.startswith("No")
    top = yes.logprobs[0].top
    assert top["Yes"] > top.get("No", -99)
    assert yes.prompt_tokens > 10 and yes.completion_tokens >= 1


class Verdict(BaseModel):
    better: str
    reason: str


def test_structured_output_and_cache_through_the_real_model(provider, tmp_path):
    request = structured_request(
        [("user", "Which reply is more polite? A: 'Sure, happy to help!' B: 'Do it yourself.' "
                  "Reply in JSON with 'better' (A or B) and a short 'reason'.")],
        Verdict, max_tokens=60, template_version="test/1")
    request = request.model_copy(update={"json_schema": {**request.json_schema, "properties": {
        "better": {"type": "string", "enum": ["A", "B"]}, "reason": {"type": "string", "maxLength": 120}}}})
    client = LLMClient(provider, cache=LLMCache(tmp_path / "c.sqlite"))
    response = client.complete(request, Verdict)
    assert response.ok, response.error
    assert response.parsed.better == "A"
    again = LLMClient(provider, cache=LLMCache(tmp_path / "c.sqlite"))
    cached = again.complete(request, Verdict)
    assert cached.cached and cached.parsed == response.parsed and again.stats.calls == 0


def test_presence_check_ranks_demo_responses_by_their_true_concept(provider, tmp_path):
    """One response at a time: P(Yes) for "contains a code block?" read from the log-probabilities.

    The 1.5B model's plain Yes/No answers lean to Yes, but P(Yes) ranks the responses that
    truly carry a code block (the demo data knows which) above those that do not.
    """
    import math

    from preflens.demo import load_truth

    dataset = load_pairs(demo_data_path())
    truth = load_truth(demo_data_path())["pairs"]
    rows = dataset.frame[dataset.frame["domain"] == "software"].head(12)
    client = LLMClient(provider, cache=LLMCache(tmp_path / "c.sqlite"))
    answers = client.map([yes_no(f"Response:\n{text}\n\nDoes the response contain a code block?")
                          for text in rows["response_a"]])

    def p_yes(answer):
        top = answer.logprobs[0].top
        yes, no = math.exp(top.get("Yes", -30.0)), math.exp(top.get("No", -30.0))
        return yes / (yes + no)

    scores = [p_yes(a) for a in answers]
    has_code = ["code_block" in truth[i]["concepts_a"] for i in rows["id"]]
    positives = [s for s, t in zip(scores, has_code) if t]
    negatives = [s for s, t in zip(scores, has_code) if not t]
    assert positives and negatives
    auc = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives) / (len(positives) * len(negatives))
    assert auc >= 0.8, (auc, sorted(zip(scores, has_code)))


@pytest.mark.timeout(1300)  # about 130 s alone; a shared 2-core machine can take several times that
def test_demo_end_to_end_through_the_embedded_model(tmp_path, model_home):
    """`preflens demo` as a user runs it (a fresh process, the default LLM), on 3 pairs per domain.

    Its home holds the model already assembled (by ``model_home``, which checks the assembly), so that the
    test run keeps one 1.1 GB copy on disk, not one per test; the cache is the test's own."""
    import json
    import subprocess
    import sys

    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    (home / "models").symlink_to(model_home / "models")
    env = {**os.environ, "PREFLENS_HOME": str(home)}
    command = [sys.executable, "-m", "preflens", "demo", "--out", str(tmp_path / "demo"), "--pairs-per-domain", "3",
               "--given-concepts", "--splits", "2", "--bootstrap", "20"]
    first = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    report = json.loads((tmp_path / "demo" / "report.json").read_text())
    assert report["run"]["totals"]["calls"] == 12 * 16  # 2 responses x 8 concepts per pair, one call each
    recovery = report["recovery"]
    # the model reads the planted concepts off the responses far better than chance
    assert recovery["differing_cells"] >= 30 and recovery["sign_accuracy"] > 0.65
    assert "Recovery of the planted truth" in first.stdout and "report.html" in first.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0 and "represent: up to date" in again.stderr
