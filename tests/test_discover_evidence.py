"""Discovery from evidence (names and verification) and distilled representation, through fake LLMs."""

from __future__ import annotations

import json
import math
import random
import re

import numpy as np
import pandas as pd
import pytest

from preflens.concepts import Concept, ConceptSet
from preflens.data import PairDataset
from preflens.discover_evidence import EvidenceDiscoverySettings, adiscover_from_evidence
from preflens.distill import DistillSettings, ResponseFeatures, contains_phrase, distill_values
from preflens.evidence import EvidenceSettings
from preflens.llm import LLMClient
from preflens.testing import FakeLLM

from test_evidence import phrase_pairs


def _response(request) -> str:
    return re.search(r"<response>\n(.*?)\n</response>", request.messages[-1].content, re.S).group(1)


def fake_llm(names: dict[str, tuple[str, str]]) -> FakeLLM:
    """Names evidence by a keyword it contains; says Yes when the response has the concept's marker.

    ``names``: keyword in the evidence -> (name, definition). A definition's marker is its last word;
    the marker 'anything' is present in every response.
    """
    def reply(request) -> str:
        text = request.messages[-1].content
        if request.template_version.startswith("name-evidence"):
            for keyword, (name, definition) in names.items():
                if keyword in text:
                    return json.dumps({"name": name, "definition": definition})
            return json.dumps({"name": "Other", "definition": "The response says other"})
        if request.template_version.startswith("choose-concept"):
            return "1"
        marker = re.search(r"property: (.*) Answer", text).group(1).rstrip(".").split()[-1]
        return "Yes" if marker == "anything" or marker in _response(request) else "No"

    return FakeLLM(reply)


def labelled(pairs: pd.DataFrame, labels: list[str]) -> PairDataset:
    return PairDataset(pairs.assign(**{"label:human": labels}))


def test_discovery_names_verifies_and_drops_a_concept_that_never_varies():
    pairs, labels = phrase_pairs(60)
    llm = fake_llm({"wiring": ("Safety check", "The response tells the user to check the wiring"),
                    "weather": ("Always there", "The response contains anything")})
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(names="free", evidence=EvidenceSettings(sentences=False, min_z=0.5))
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))

    assert concepts.names[0] == "Safety check"
    kept = concepts.concepts[0]
    assert kept.shared and kept.provenance == ["evidence", "phrase"]
    # what distilled representation reads besides the definition: the phrases of its evidence
    evidence = concepts.meta["candidates"][0]["evidence"][0]
    assert kept.phrases == evidence["examples"][:3] and "always double check" in kept.phrases and kept.examples == []
    candidates = {c["name"]: c for c in concepts.meta["candidates"]}
    assert candidates["Safety check"]["status"] == "kept"
    assert candidates["Safety check"]["verify"]["separation"] == 1.0
    if "Always there" in candidates:  # named from weather evidence when the noise made some
        assert candidates["Always there"]["status"] == "rejected: the answers do not vary"
        assert "Always there" not in concepts.names
    # calls: one name per piece of evidence (but those a measured concept already measures), then the
    # presence checks of verification
    names = [r for r in llm.history if r.template_version.startswith(("name-evidence", "choose-concept"))]
    assert len(names) == report["calls"]["names"] == report["evidence"] - len(report["measured"])
    verify = [r for r in llm.history if r.template_version.startswith("presence")]
    assert 0 < len(verify) <= report["calls"]["verify"]  # identical requests (same text, same concept) go once
    assert len(llm.history) == len(names) + len(verify)


def test_a_named_candidate_that_never_varies_is_rejected():
    pairs, labels = phrase_pairs(60)
    llm = fake_llm({"wiring": ("Everything", "The response contains anything")})
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(names="free", evidence=EvidenceSettings(sentences=False))
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))
    statuses = {c["name"]: c["status"] for c in concepts.meta["candidates"]}
    assert statuses["Everything"] == "rejected: the answers do not vary"
    assert "Everything" not in concepts.names


def test_library_naming_offers_a_shortlist_and_verification_rejects_a_choice_that_never_fires():
    from preflens.discover_evidence import library

    pairs, labels = phrase_pairs(60)
    llm = FakeLLM(lambda request: "1" if request.template_version.startswith("choose-concept") else "No")
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(evidence=EvidenceSettings(sentences=False), shortlist=4)
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))
    choices = [r for r in llm.history if r.template_version.startswith("choose-concept")]
    assert len(choices) == report["calls"]["names"] == report["naming"]["named"] > 0
    prompt = choices[0].messages[-1].content
    assert "1. " in prompt and "4. " in prompt and "5. None of these." in prompt and "6. " not in prompt
    names = {c.name for c in library()}
    assert all(c["name"] in names for c in concepts.meta["candidates"])
    assert all(c["status"] == "rejected: the answers do not vary" for c in concepts.meta["candidates"])
    assert len(concepts) == 0


def test_verify_answers_are_the_representation_requests():
    """Verification asks exactly what Presence-rep asks, so representation reads those answers from the cache."""
    from preflens.represent import presence_request

    pairs, labels = phrase_pairs(60)
    llm = fake_llm({"wiring": ("Safety check", "The response tells the user to check the wiring")})
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(names="free", evidence=EvidenceSettings(sentences=False))
    client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))
    verify = [r for r in llm.history if r.template_version.startswith("presence")]
    assert verify
    concept = Concept("Safety check", "The response tells the user to check the wiring")
    first = verify[0]
    rebuilt = presence_request(concept, _response(first), first.item)
    assert rebuilt.key_fields() == first.key_fields()


def marker_responses(n: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    texts = [("Hello! " if rng.random() < 0.4 else "") + f"Answer number {i}." for i in range(n)]
    has = np.array([t.startswith("Hello") for t in texts], float)
    return texts, has


def test_distilled_labels_ask_a_share_of_the_cells_and_predict_the_rest():
    texts, has = marker_responses(200)
    rng = np.random.default_rng(0)
    features = np.hstack([has[:, None] + rng.normal(0, 0.15, (200, 1)), rng.normal(0, 1, (200, 3))])
    concepts = ConceptSet([Concept("Greeting", "The response opens with Hello")])
    llm = fake_llm({})
    client = LLMClient(llm, cache=None)
    settings = DistillSettings(seed_min=24, seed_share=0.1, budget_share=0.25)
    values, summaries = client.run(distill_values(texts, [f"r{i}:a" for i in range(200)], np.array(["d"] * 200),
                                                  concepts, client, settings, features=features))
    summary = summaries[0]
    assert summary.fallback is None and summary.cv_correlation >= 0.8
    assert summary.asked == len(llm.history) <= 0.25 * 200  # within budget
    assert summary.asked + summary.predicted == 200 == len(values)
    assert set(values["source"]) == {"llm", "predicted"}
    predicted = values[values["source"] == "predicted"]
    agreement = np.mean((predicted["value"].to_numpy() >= 0.5) == (has[predicted["response"]] == 1))
    assert agreement >= 0.95


def test_a_concept_the_model_cannot_learn_falls_back_to_the_llm():
    texts, _ = marker_responses(80)
    features = np.random.default_rng(0).normal(0, 1, (80, 4))  # carries nothing about the greeting
    concepts = ConceptSet([Concept("Greeting", "The response opens with Hello")])
    llm = fake_llm({})
    client = LLMClient(llm, cache=None)
    values, summaries = client.run(distill_values(texts, [f"r{i}:a" for i in range(80)], np.array(["d"] * 80),
                                                  concepts, client, DistillSettings(min_correlation=0.7),
                                                  features=features))
    assert summaries[0].fallback and "correlation" in summaries[0].fallback
    assert summaries[0].second_sample == DistillSettings.seed_min  # a second random sample of the seed's size came first
    assert summaries[0].asked == 80 == len(llm.history) and set(values["source"]) == {"llm"}


def test_a_concept_the_seed_cannot_judge_gets_a_second_sample_before_falling_back():
    """Greetings are rare, so a 24-response seed holds few and its correlation says little; a second random
    sample of the same size shows that the features carry the concept, and nothing falls back."""
    rng = random.Random(2)
    texts = [("Hello! " if rng.random() < 0.08 else "") + f"Answer number {i}." for i in range(300)]
    has = np.array([t.startswith("Hello") for t in texts], float)
    noise = np.random.default_rng(1)
    features = np.hstack([has[:, None] + noise.normal(0, 0.3, (300, 1)), noise.normal(0, 1, (300, 3))])
    concepts = ConceptSet([Concept("Greeting", "The response opens with Hello")])
    results = []  # (with these seeds the seed's correlation is -0.10; on both samples 0.77)
    for second in (False, True):
        llm = fake_llm({})
        client = LLMClient(llm, cache=None)
        settings = DistillSettings(seed_share=0.08, seed_min=24, min_correlation=0.6, second_sample=second)
        _, summaries = client.run(distill_values(texts, [f"r{i}:a" for i in range(300)], np.array(["d"] * 300),
                                                 concepts, client, settings, features=features))
        results.append((summaries[0], len(llm.history)))
    (without, calls_without), (with_second, calls_with) = results
    assert without.fallback and calls_without == 300  # judged on the seed alone: every response asked
    assert with_second.second_sample == 24 and with_second.fallback is None
    assert calls_with == with_second.asked <= 0.2 * 300  # the rounds then ask what is left of the budget


def test_library_naming_works_without_the_embedding_extra(monkeypatch):
    """Without sentence-transformers the shortlist comes from word stems, and discovery still runs."""
    import preflens.embeddings as embeddings

    monkeypatch.setattr(embeddings, "embeddings_available", lambda: False)
    pairs, labels = phrase_pairs(60)
    llm = FakeLLM(lambda request: "1" if request.template_version.startswith("choose-concept") else "No")
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(evidence=EvidenceSettings(sentences=True), shortlist=3)
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))
    assert report["naming"]["named"] > 0 and all(e["source"] == "phrase" for c in concepts.meta["candidates"]
                                                   for e in c["evidence"])


def test_evidence_is_mined_on_a_sample_of_at_most_max_pairs():
    pairs, labels = phrase_pairs(60)
    llm = fake_llm({"wiring": ("Safety check", "The response tells the user to check the wiring")})
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(names="free", evidence=EvidenceSettings(sentences=False), max_pairs=30)
    concepts, _ = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))
    evidence = [e for c in concepts.meta["candidates"] for e in c["evidence"]]
    assert evidence and max(e["pairs"] for e in evidence) <= 30
    assert "Safety check" in concepts.names  # the deciding phrase is found in the sample too


def test_candidates_are_duplicates_when_their_answers_follow_each_other_not_when_both_say_yes():
    from preflens.discover_evidence import _duplicate_of

    kept = {0: 0.97, 1: 0.93, 2: 0.99, 3: 0.88, 4: 0.95, 5: 0.91}  # a model that says Yes to everything
    unrelated = {0: 0.90, 1: 0.98, 2: 0.89, 3: 0.96, 4: 0.92, 5: 0.97}  # also Yes everywhere, another ranking
    follows = {0: 0.80, 1: 0.60, 2: 0.90, 3: 0.30, 4: 0.70, 5: 0.55}  # ranks the responses as the kept one does
    assert _duplicate_of(1, [0], [kept, unrelated], 0.9) is None
    assert _duplicate_of(1, [0], [kept, follows], 0.9) == 0
    assert _duplicate_of(1, [0], [kept, {0: 0.8, 1: 0.6, 2: 0.9}], 0.9) is None  # fewer than 4 shared responses


def test_the_entry_closest_to_the_evidence_is_checked_when_the_models_choice_fails():
    """The model picks the second option for every piece of evidence; only the first (closest) one's
    presence answers follow the evidence. Its choice is rejected, and the closest entry is kept."""
    pairs, labels = phrase_pairs(60)
    closest: dict[str, str] = {}  # evidence text -> the definition offered first

    def reply(request) -> str:
        text = request.messages[-1].content
        if request.template_version.startswith("choose-concept"):
            first = re.search(r"\n1\. (.*)\n", text).group(1)
            closest[text.split("Which description")[0]] = first
            return "2"
        definition = re.search(r"property: (.*) Answer", text).group(1)
        wiring_first = [d for e, d in closest.items() if "wiring" in e]
        fits = any(d.rstrip(".").lower() in definition.lower() for d in wiring_first)
        return "Yes" if fits and "wiring" in _response(request) else "No"

    llm = FakeLLM(reply)
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(evidence=EvidenceSettings(sentences=False), shortlist=3)
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))

    candidates = concepts.meta["candidates"]
    model_choices = [c for c in candidates if c["choice"] == "model"]
    second = [c for c in candidates if c["choice"] == "closest"]
    assert model_choices and all(c["status"].startswith("rejected") for c in model_choices)
    [kept] = [c for c in second if c["status"] == "kept"]
    assert any("wiring" in e for item in kept["evidence"] for e in item["examples"])
    assert concepts.names == [kept["name"]]
    # the second round's checks are counted apart, within the plan's bound of twice the first round's
    presence = [r for r in llm.history if r.template_version.startswith("presence")]
    assert report["calls"]["verify_closest"] > 0
    assert len(presence) <= report["calls"]["verify"] + report["calls"]["verify_closest"]


def test_answers_already_in_the_cache_join_the_seed_at_no_call(tmp_path):
    """Discovery's checks of a concept are in the cache when representation starts; distillation uses
    them (they cost nothing) and asks the LLM only for the rest of its seed and rounds."""
    from preflens.llm import LLMCache
    from preflens.represent import presence_request

    texts, has = marker_responses(200)
    items = [f"r{i}:a" for i in range(200)]
    rng = np.random.default_rng(0)
    features = np.hstack([has[:, None] + rng.normal(0, 0.15, (200, 1)), rng.normal(0, 1, (200, 3))])
    concept = Concept("Greeting", "The response opens with Hello")
    settings = DistillSettings(seed_min=24, seed_share=0.1, budget_share=0.2, rounds=0)
    cache = LLMCache(tmp_path / "cache.sqlite")
    earlier = LLMClient(fake_llm({}), cache=cache)  # "discovery": 12 checks on responses 180-191
    earlier.run(earlier.amap([presence_request(concept, texts[i], items[i]) for i in range(180, 192)]))

    counts = []
    for use_cached in (True, False):
        llm = fake_llm({})
        client = LLMClient(llm, cache=LLMCache(tmp_path / "cache.sqlite") if use_cached else None)
        values, [summary] = client.run(distill_values(
            texts, items, np.array(["d"] * 200), ConceptSet([concept]), client,
            DistillSettings(**{**settings.__dict__, "use_cached": use_cached}), features=features))
        asked = set(values.loc[values["source"] == "llm", "response"])
        counts.append((summary.asked, len(llm.history), asked))
    (with_cache, calls_with, asked_with), (without, calls_without, asked_without) = counts
    assert set(range(180, 192)) <= asked_with and not set(range(180, 192)) <= asked_without
    in_seed = len(set(range(180, 192)) & asked_without)  # the random seed may hold a few of them anyway
    assert with_cache == without + 12 - in_seed  # the 12 known answers joined the same seed
    assert calls_with == calls_without - in_seed  # and cost no call


def test_a_phrase_matches_whole_words_in_order_whatever_the_punctuation():
    texts = ["it works alike, with only minor changes", "cases alike", "use 1 kg of potatoes", "kg", "unalike with"]
    assert contains_phrase(texts, ["Alike with", "1 kg"]).tolist() == [1.0, 0.0, 1.0, 0.0, 0.0]
    assert contains_phrase(texts, []).tolist() == [0.0] * 5


def test_a_concepts_phrases_let_distillation_learn_what_the_embeddings_miss():
    """The LLM says Yes where a response asks for the 'zorblat rate'; the embeddings here carry nothing
    of it. From the concept's definition alone the light model cannot learn it and every response
    goes to the LLM; with the phrase discovery recorded, the seed's answers teach it the rest."""
    rng = random.Random(0)
    texts = [f"Answer number {i}." + (" Ask for the Zorblat rate." if rng.random() < 0.3 else "") for i in range(160)]
    has = np.array(["Zorblat" in t for t in texts], float)
    noise = np.random.default_rng(0)

    def unit(rows):
        return rows / np.linalg.norm(rows, axis=1, keepdims=True)

    features = ResponseFeatures(noise.normal(0, 1, (160, 4)), [unit(noise.normal(0, 1, (2, 384))) for _ in texts],
                                unit(noise.normal(0, 1, (160, 384))), [t.lower() for t in texts])
    outcomes = {}
    for phrases in ([], ["zorblat rate"]):
        llm = FakeLLM(lambda request: "Yes" if "Zorblat" in _response(request) else "No")
        client = LLMClient(llm, cache=None)
        concept = Concept("Practical", "The response is practical", phrases=phrases)
        values, [summary] = client.run(distill_values(texts, [f"r{i}:a" for i in range(160)], np.array(["d"] * 160),
                                                      ConceptSet([concept]), client, DistillSettings(),
                                                      features=features))
        outcomes[bool(phrases)] = (summary, len(llm.history), values)
    without, calls_without, _ = outcomes[False]
    with_phrase, calls_with, values = outcomes[True]
    assert without.fallback and calls_without == 160
    assert with_phrase.fallback is None and with_phrase.cv_correlation > 0.9 and calls_with == with_phrase.asked < 40
    predicted = values[values["source"] == "predicted"]
    assert np.all((predicted["value"].to_numpy() >= 0.5) == (has[predicted["response"]] == 1))


def test_a_library_concept_whose_evidence_was_mined_in_one_domain_belongs_to_that_domain():
    """Evidence mined over all domains gives a shared concept; the same evidence mined within one domain
    gives a concept of that domain (as a shared one, its weight would come from the other domains' noise)."""
    from dataclasses import replace

    from preflens.evidence import mine_evidence

    pairs, labels = phrase_pairs(60)
    data = labelled(pairs, labels)
    overall = next(e for e in mine_evidence(data.frame, labels, EvidenceSettings(sentences=False))
                   if e.domain is None and "check the wiring" in e.examples)
    response_domains = np.concatenate([data.frame["domain"].to_numpy()] * 2)
    in_diy = replace(overall, domain="diy", carriers=overall.carriers & (response_domains == "diy"))
    scopes = {}
    for item in (overall, in_diy):
        llm = FakeLLM(lambda request: "1" if request.template_version.startswith("choose-concept")
                      else "Yes" if "wiring" in _response(request) else "No")
        client = LLMClient(llm, cache=None)
        concepts, _ = client.run(adiscover_from_evidence(data, client, EvidenceDiscoverySettings(), evidence=[item]))
        assert len(concepts.concepts) == 1, concepts.meta["candidates"]
        scopes[item.domain] = (concepts.concepts[0].shared, concepts.concepts[0].domains)
    assert scopes == {None: (True, []), "diy": (False, ["diy"])}


def test_choices_are_read_net_of_the_models_preference_for_the_last_option():
    from preflens.discover_evidence import debiased_choices

    rng = np.random.default_rng(0)
    right = [k % 4 + 1 for k in range(12)]  # the option that fits, 1..4; 5 is the last description, 6 "none"
    answers = []
    for r in right:
        p = np.full(6, 0.05) + rng.uniform(0, 0.01, 6)
        p[4], p[r - 1] = 0.40, 0.30  # whatever fits, the last description gets the most
        answers.append(p / p.sum())
    assert all(int(np.argmax(p)) + 1 == 5 for p in answers)
    choices, prior = debiased_choices(answers)
    assert choices == right
    assert int(np.argmax(prior)) == 4 and prior.sum() == pytest.approx(1.0)
    # a text answer (one-hot) keeps its choice, an unusable one stays unusable
    one_hot = np.eye(6)[4]
    choices, _ = debiased_choices([*answers, one_hot, None])
    assert choices[-2:] == [5, None]
    assert debiased_choices([None]) == ([None], None)


def test_library_naming_without_the_position_bias_keeps_the_choice_that_fits():
    """The model gives the last description the most probability for every piece of evidence and the
    description that fits the second most; only that one's presence answers follow the evidence."""
    from preflens.llm.base import LLMReply, TokenLogprob

    pairs, labels = phrase_pairs(60)
    fits: dict[str, str] = {}  # evidence text -> the definition that fits it (the second offered)

    class Biased(FakeLLM):
        async def complete(self, request):
            reply = await super().complete(request)
            if not request.template_version.startswith("choose-concept"):
                return reply
            text = request.messages[-1].content
            fitting = 2 if "wiring" in text else len(text) % 3 + 1
            fits[text.split("Which description")[0]] = re.search(rf"\n{fitting}\. (.*)\n", text).group(1)
            top = {"4": math.log(0.45), str(fitting): math.log(0.35), "5": math.log(0.05)}
            return LLMReply(text="4", logprobs=[TokenLogprob(token="4", logprob=top["4"], top=top)])

    def reply(request) -> str:
        if request.template_version.startswith("choose-concept"):
            return "4"
        definition = re.search(r"property: (.*) Answer", request.messages[-1].content).group(1)
        fitting = any(d.rstrip(".").lower() in definition.lower() for e, d in fits.items() if "wiring" in e)
        return "Yes" if fitting and "wiring" in _response(request) else "No"

    results = {}
    for debias in (True, False):
        fits.clear()
        client = LLMClient(Biased(reply), cache=None)
        settings = EvidenceDiscoverySettings(evidence=EvidenceSettings(sentences=False), shortlist=4,
                                             debias_positions=debias)
        results[debias] = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))

    concepts, report = results[True]
    prior = report["naming"]["position_prior"]
    assert len(prior) == 5 and int(np.argmax(prior)) == 3
    [kept] = [c for c in concepts.meta["candidates"] if c["status"] == "kept"]
    assert kept["choice"] == "model" and concepts.names == [kept["name"]]
    # read as it comes, every choice is the last description: none fits, and no first choice is kept
    concepts, report = results[False]
    assert "position_prior" not in report["naming"]
    assert not [c for c in concepts.meta["candidates"] if c["choice"] == "model" and c["status"] == "kept"]


def test_a_pass_that_rests_on_one_answer_is_rejected():
    from preflens.discover_evidence import Candidate, _judge, firmness, passes
    from preflens.evidence import Evidence

    settings = EvidenceDiscoverySettings()
    # the carriers are barely above three of the others; one other far below makes the pass
    carriers, others = [0.97, 0.96, 0.91, 0.90], [0.92, 0.90, 0.89, 0.20]
    assert passes(carriers, others, settings)
    assert firmness(carriers, others, settings) < settings.min_firmness
    firm_others = [0.30, 0.50, 0.40, 0.60]
    assert firmness(carriers, firm_others, settings) == 1.0
    assert firmness(carriers[:1], others, settings) == 0.0  # too few answers to leave one out

    sample = [(i, True) for i in range(4)] + [(i, False) for i in range(4, 8)]
    evidence = Evidence("phrase", None, ["x"], z=2.0, pairs=4, wins=4, carriers=np.ones(8, bool))
    verdicts = []
    for values in (carriers + others, carriers + firm_others):
        candidate = Candidate("C", "The response does c.", [evidence])
        kept: list[int] = []
        _judge(0, [candidate], sample, [dict(enumerate(values))], kept, settings)
        verdicts.append((candidate.status, kept, candidate.verify["passed"]))
    assert verdicts[0][0].startswith("rejected: the verdict rests on one or two answers") and verdicts[0][1] == []
    assert verdicts[0][2] is False
    assert verdicts[1] == ("kept", [0], True)


def test_a_pass_that_is_not_firm_is_checked_on_as_many_responses_again():
    """The model misses the phrase in the first two responses that carry it: on 4 + 4 checks the pass
    rests on the two others, so 8 more responses are checked and the verdict is taken on all 16."""
    pairs, labels = phrase_pairs(60)
    missed: list[str] = []

    def reply(request) -> str:
        text = request.messages[-1].content
        if request.template_version.startswith("name-evidence"):
            named = ("Safety check", "The response tells the user to check the wiring") if "wiring" in text \
                else ("Other", "The response says other")
            return json.dumps({"name": named[0], "definition": named[1]})
        response = _response(request)
        if "wiring" not in text.split("property:")[1] or "wiring" not in response:
            return "No"
        if len(missed) < 2 and response not in missed:
            missed.append(response)
        return "No" if response in missed else "Yes"

    llm = FakeLLM(reply)
    client = LLMClient(llm, cache=None)
    settings = EvidenceDiscoverySettings(names="free", evidence=EvidenceSettings(sentences=False))
    concepts, report = client.run(adiscover_from_evidence(labelled(pairs, labels), client, settings))

    candidates = {c["name"]: c for c in concepts.meta["candidates"]}
    check = candidates["Safety check"]
    assert report["rechecked"] == ["Safety check"] and check["status"] == "kept"
    assert check["verify"]["responses"] == check["verify"]["answered"] == 16 and check["verify"]["firmness"] >= 0.75
    asked = [r for r in llm.history if r.template_version.startswith("presence") and "wiring" in r.messages[-1].content
             .split("property:")[1]]
    assert len({_response(r) for r in asked}) == len(asked) == 16  # 8 responses, then 8 others
    assert concepts.names == ["Safety check"]
