"""Concept discovery with a fake LLM that follows fixed rules per prompt template."""

from __future__ import annotations

import json
import random
import re

import pandas as pd
import pytest

from preflens.concepts import ConceptSet
from preflens.data import PairDataset
from preflens.discover import (
    DiscoverySettings,
    _Found,
    candidate_pairs,
    discover,
    make_batches,
    plan_calls,
)
from preflens.errors import DataError
from preflens.llm import LLMCache, LLMClient
from preflens.testing import FakeLLM

PROPOSALS = {
    "cooking": [("Clear Steps", "A good response gives clear steps."), ("Step Clarity", "A good response has clear steps."),
                ("Quantities", "A good response gives amounts."), ("Safety", "A good response warns about burns.")],
    "travel": [("Clear Steps", "A good response lays out clear steps."), ("Budget", "A good response gives prices.")],
    "legal": [("Clear Steps", "A good response gives an ordered plan."), ("Citations", "A good response cites the law.")],
}


def rule(request):
    version, user = request.template_version, request.messages[-1].content
    if version.startswith("taxonomy"):
        return json.dumps({"domains": ["Everyday"], "tasks": ["advice"]})
    if version.startswith("tag-query"):
        return json.dumps({"subdomains": ["Everyday"], "tasks": ["advice"]})
    if version.startswith("propose"):
        domain = re.search(r"Domain: (\w+)\.", user).group(1)
        return json.dumps({"concepts": [{"name": n, "description": d} for n, d in PROPOSALS[domain]]})
    if version.startswith("dedup"):
        pairs = re.findall(r"^(p\d+): '([^']*)' \(.*?\) vs '([^']*)'", user, re.M)
        same = {frozenset({"Clear Steps", "Step Clarity"})}
        return json.dumps({key: frozenset({a, b}) in same for key, a, b in pairs})
    if version.startswith("define"):
        keys = re.findall(r"^- (c\d+)\. ([^:]+):", user, re.M)
        return json.dumps({k: f"A high score indicates {name.lower()}; a low score indicates none." for k, name in keys})
    raise AssertionError(version)


def pairs(n_per_domain=6):
    rows = []
    for domain in PROPOSALS:
        for i in range(n_per_domain):
            rows.append({"id": f"{domain}{i}", "domain": domain, "prompt": f"{domain} question {i}",
                         "response_a": f"good answer {i}", "response_b": f"bad answer {i}",
                         "label:human": "a" if i % 2 else "b"})
    rows[0]["label:human"] = "tie"
    return PairDataset(pd.DataFrame(rows))


@pytest.fixture
def client(tmp_path):
    return LLMClient(FakeLLM(rule), cache=LLMCache(tmp_path / "c.sqlite"))


def test_discovery_end_to_end(client, tmp_path):
    settings = DiscoverySettings(batches_per_domain=3)
    result = discover(pairs(), client, settings)
    concepts = {c.name: c for c in result.concepts.concepts}
    assert list(concepts)[:10] == ["Specificity", "Clarity", "Relevance", "Helpfulness", "Empathy", "Accuracy",
                                   "Informativeness", "Creativity", "Safety", "Engagement"]
    assert "Step Clarity" not in concepts  # merged into the more frequent "Clear Steps"
    clear = concepts["Clear Steps"]
    assert clear.shared and clear.counts["domains"] == 3
    assert "has clear steps" in " ".join([clear.definition]) or clear.definition.startswith("A high score")
    assert not concepts["Budget"].shared and concepts["Budget"].domains == ["travel"]
    assert concepts["Citations"].domains == ["legal"]
    assert concepts["Safety"].counts["domains"] == 1  # the fixed concept absorbed the discovered one
    assert result.report["batches"] == {"cooking": 3, "travel": 3, "legal": 3}
    assert result.report["deduplication"]["cooking"]["duplicates"] == 1
    result.concepts.save(tmp_path / "concepts.json")
    loaded = ConceptSet.load(tmp_path / "concepts.json")
    assert loaded.names == result.concepts.names and loaded.concepts[10].provenance

    again = LLMClient(FakeLLM(lambda r: "unused"), cache=LLMCache(tmp_path / "c.sqlite"))
    assert discover(pairs(), again, settings).concepts.names == result.concepts.names
    assert again.stats.calls == 0


def test_the_three_framings_and_the_avoid_instruction_are_used(client):
    discover(pairs(), client, DiscoverySettings(batches_per_domain=12, seed=3))
    prompts = [r.messages[-1].content for r in client.provider.history if r.template_version.startswith("propose")]
    assert any("<chosen>" in p and "<rejected>" in p for p in prompts)
    assert any("<chosen>" in p and "<rejected>" not in p for p in prompts)
    assert any("<rejected>" in p and "<chosen>" not in p for p in prompts)
    avoid = sum("completely different" in p for p in prompts)
    assert 0 < avoid < len(prompts)


def test_ties_are_not_used_and_counts_scale_with_the_data():
    settings = DiscoverySettings()
    assert settings.batches_for(400) == 300 and settings.batches_for(6) == 5 and settings.batches_for(1) == 2
    plan = plan_calls(pairs(), settings)
    assert plan["tagging"] == 3 * 6 - 1  # the tie's query is not a discovery triplet
    with pytest.raises(DataError, match="no mechanism 'judge'"):
        plan_calls(pairs(), DiscoverySettings(mechanism="judge"))


def test_batches_follow_the_tags():
    items = [(f"i{k}", f"q{k}", "c", "r") for k in range(10)]
    tags = {f"q{k}": (["Python"] if k < 3 else ["Linux"], ["debugging"]) for k in range(10)}
    batches = make_batches(items, tags, DiscoverySettings(batches_per_domain=50, batch_size=2), random.Random(0))
    for batch in batches:
        if batch["subdomain"] == "Python":
            assert all(i < 3 for i in batch["triplets"])
    assert {b["framing"] for b in batches} == {"pair", "chosen", "rejected"}


def test_stem_overlap_flags_candidates():
    found = [_Found("Clarity"), _Found("Clear language"), _Found("Clarifying questions"), _Found("Budget")]
    pairs_found = candidate_pairs(found, "stem", 0.75)
    # 'clariti', 'clear' and 'clarifi' are different stems: stem overlap misses these near-synonyms,
    # which is why embedding-based flagging is offered
    assert pairs_found == set()
    assert candidate_pairs([_Found("Step clarity"), _Found("Clear steps")], "stem", 0.75) == {(0, 1)}


def test_embedding_flagging_catches_synonyms_that_stems_miss():
    from preflens.embeddings import embeddings_available

    if not embeddings_available():
        pytest.skip("needs pip install 'preflens[embed]'")
    found = [_Found("Clarity", ["A good response is easy to understand."]),
             _Found("Lucid wording", ["A good response is easy to understand and clearly worded."]),
             _Found("Budget", ["A good response says what things cost."])]
    assert candidate_pairs(found, "stem", 0.75) == set()
    flagged = candidate_pairs(found, "embedding", 0.6)
    assert (0, 1) in flagged and (0, 2) not in flagged and (1, 2) not in flagged


def test_verification_drops_proposals_that_never_vary_or_do_not_follow_the_label(tmp_path):
    """With verify_pairs, each discovered concept is asked Presence-rep's question on both responses of
    labelled pairs: 'Budget' is said of every response (it never varies), 'Citations' of the winning
    response only (it follows the label), 'Clear Steps' of the first response whatever won (unrelated).
    The ten fixed concepts are kept unchecked."""
    rows = []
    for domain in PROPOSALS:
        for i in range(12):
            winner = "a" if i % 2 else "b"
            texts = {side: f"{'winning' if side == winner else 'plain'} answer {i} from {side}" for side in "ab"}
            rows.append({"id": f"{domain}{i}", "domain": domain, "prompt": f"{domain} question {i}",
                         "response_a": texts["a"], "response_b": texts["b"], "label:human": winner})
    data = PairDataset(pd.DataFrame(rows))

    def with_presence(request):
        if request.template_version.startswith("presence"):
            text = request.messages[-1].content
            response = text.split("<response>")[1].split("</response>")[0]
            if "budget" in text:
                return "Yes"
            if "citations" in text:
                return "Yes" if "winning" in response else "No"
            return "Yes" if "from a" in response else "No"
        return rule(request)

    llm = FakeLLM(with_presence)
    settings = DiscoverySettings(batches_per_domain=2, verify_pairs=10)
    result = discover(data, LLMClient(llm, cache=None), settings)
    verdicts = {v["name"]: v for v in result.report["verify"]}
    assert verdicts["Budget"]["status"] == "rejected: the answers do not vary"
    assert verdicts["Citations"]["status"] == "kept" and verdicts["Citations"]["z"] > 2
    assert verdicts["Clear Steps"]["status"].startswith("rejected: unrelated to the label")
    names = result.concepts.names
    assert "Citations" in names and "Budget" not in names and "Clear Steps" not in names
    statuses = {c["name"]: c["status"] for c in result.concepts.meta["candidates"]}  # the report's folded list
    assert statuses["Budget"] == "rejected: the answers do not vary" and statuses["Citations"] == "kept"
    assert names[:10] == ["Specificity", "Clarity", "Relevance", "Helpfulness", "Empathy", "Accuracy",
                          "Informativeness", "Creativity", "Safety", "Engagement"]  # asked for: never checked
    presence = [r for r in llm.history if r.template_version.startswith("presence")]
    # both responses of at most 10 pairs per concept, within each concept's domains
    assert 0 < len(presence) <= 2 * 10 * len(verdicts)
    assert not any("Specificity" in r.messages[-1].content for r in presence)
    without = discover(data, LLMClient(FakeLLM(rule), cache=None), DiscoverySettings(batches_per_domain=2))
    assert without.report["verify"] == [] and "Budget" in without.concepts.names  # off by default
