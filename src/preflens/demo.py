"""Demo data that knows its own truth: multi-domain pairs labelled by a planted HMDR model.

Each response is an answer to a real-looking question, built from parts that each carry one
known concept (a safety caveat, a numbered list, concrete quantities, a clarifying question, a
polite opener, hedging, filler, and one concept specific to each domain such as a code block in
software). A pair's feature for concept j is present(A) - present(B) in {-1, 0, 1}.

On top of these, two *measured properties* are planted, the biases users come to check: length
(neutral elaboration sentences, which carry no concept, vary it) and formatting (the steps put in
**bold**). Their pair features are exactly preflens's measured concepts ``length`` and
``emphasis`` (:mod:`preflens.measured`), which no LLM concept reads. The label is drawn from the
planted model: P(A preferred) = sigmoid((b + s_d) . x + sum_k w_k m_k), that is shared weights plus
domain-specific weights on the concepts, plus the properties' weights on their measured features,
plus logistic noise. The weights and every pair's concepts and features are saved in
``truth.json`` beside the pairs, so that a pipeline's recovery can be measured.

A fixed set (4 domains x 30 pairs, seed 0) ships in the package: :func:`demo_data_path`.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

from .concepts import Concept, ConceptSet
from .data import content_id
from .errors import DataError


@dataclass(frozen=True)
class PlantedConcept:
    """A concept the generator can put in a response, and its planted weights."""

    name: str
    description: str
    shared_weight: float
    domain_weights: dict[str, float]
    domains: tuple[str, ...] | None = None  # None: shared, can appear in every domain
    rate: float = 0.4  # how often a response carries it

    @property
    def shared(self) -> bool:
        return self.domains is None


@dataclass(frozen=True)
class PlantedProperty:
    """A measured property planted on top of the concepts: the label also depends on the measured
    concept of this name (:mod:`preflens.measured`), with one weight shared by every domain."""

    name: str
    description: str
    weight: float


DOMAINS = ("cooking", "travel", "software", "legal")

CONCEPTS: tuple[PlantedConcept, ...] = (
    PlantedConcept("safety_caveat", "The response warns about a risk or gives a safety caveat.",
                   0.8, {"software": -0.6, "legal": 0.7}),
    PlantedConcept("numbered_list", "The response presents its steps as a numbered list.",
                   1.0, {"legal": -0.5}),
    PlantedConcept("concrete_quantities", "The response gives concrete numbers, amounts or durations.",
                   1.2, {"cooking": 0.8}),
    PlantedConcept("clarifying_question", "The response asks the user a clarifying question.",
                   -0.6, {"travel": 0.9}),
    PlantedConcept("polite_opener", "The response opens with a friendly, polite greeting.",
                   0.3, {}),
    PlantedConcept("hedging", "The response hedges with uncertain, noncommittal language.",
                   -0.9, {"legal": 0.9}),
    PlantedConcept("filler", "The response pads the answer with long, repetitive filler.",
                   -1.0, {}, rate=0.3),
    PlantedConcept("ingredient_substitution", "The response suggests a substitute ingredient.",
                   0.0, {"cooking": 1.3}, domains=("cooking",)),
    PlantedConcept("budget_estimate", "The response estimates what things will cost.",
                   0.0, {"travel": 1.4}, domains=("travel",)),
    PlantedConcept("code_block", "The response includes a code block.",
                   0.0, {"software": 1.8}, domains=("software",)),
    PlantedConcept("cites_law", "The response cites a specific law, rule or official source.",
                   0.0, {"legal": 1.5}, domains=("legal",)),
)

PROPERTIES: tuple[PlantedProperty, ...] = (
    PlantedProperty("length", "The longer response is preferred (words; neutral elaboration sentences that carry no "
                    "concept make responses longer or shorter).", 3.0),
    PlantedProperty("emphasis", "The response that puts its steps in **bold** is preferred (a formatting bias).", 1.5),
)
BOLD_RATE = 0.35
"""How often a response puts its steps in bold."""
MAX_ELABORATIONS = 5
"""A response carries 0 to this many neutral elaboration sentences, uniformly."""

_OPENERS = ("Great question, happy to help!", "Hi there, thanks for asking!")
_HEDGES = ("I'm not completely sure, and this may not apply to you, but",
           "It might depend on many things and I could be wrong, but perhaps")
_FILLER = (
    "To say it once more, it is really worth keeping all of this in mind, because all of these "
    "things matter, and in general, as mentioned above, the points above are the important points "
    "to think about, which is why it is important to think about them carefully.",
    "In summary, and to repeat what was already said, these are the things to consider, and "
    "considering them is what matters most, so it is a good idea to consider them, as noted, "
    "again and again, whenever this kind of situation comes up in general.",
)

# Sentences that lengthen a response and carry no concept: no number, question, hedge, caveat, greeting,
# list, bold or "you".
_ELABORATIONS = (
    "Each of these steps builds on the one before it, so the order matters.",
    "Many people skip the preparation, and it is the part that makes the biggest difference.",
    "The same approach works for small and large cases alike, with only minor changes.",
    "A little extra care at the start saves time and trouble later on.",
    "Most problems here come from rushing, so it helps to go slowly the first time.",
    "Once the routine is familiar, the whole process becomes quick and easy to repeat.",
    "Keeping notes on what worked makes the next attempt go even better.",
    "This is the method that experienced people rely on, and it holds up well.",
)

# Per domain: topics with a question, three steps, a quantities sentence, a caveat, a clarifying
# question, and the domain-specific part.
_TOPICS: dict[str, list[dict[str, Any]]] = {
    "cooking": [
        {"q": "How do I make crispy roast potatoes?",
         "steps": ["parboil the potatoes", "rough up their edges and coat them in hot fat", "roast them until golden"],
         "qty": "Use 1 kg of potatoes, boil them for 8 minutes, and roast at 220°C for 45 minutes.",
         "caveat": "Be careful when adding potatoes to the hot fat, as it can spatter and burn you.",
         "ask": "Are you cooking them in an oven or an air fryer?",
         "special": "If you have no goose fat, olive oil or beef dripping works as a substitute."},
        {"q": "What's the best way to cook a steak at home?",
         "steps": ["dry the steak and salt it", "sear it in a very hot pan", "rest it before slicing"],
         "qty": "For a 3 cm steak, sear 3 minutes per side and rest it for 5 minutes.",
         "caveat": "Use an extractor fan, since a smoking-hot pan can set off alarms or catch fire.",
         "ask": "Which cut of steak do you have?",
         "special": "Instead of butter for basting, you can substitute ghee, which burns less easily."},
        {"q": "How can I make my banana bread more moist?",
         "steps": ["use very ripe bananas", "add a fat such as butter or oil", "take it out as soon as a skewer comes out clean"],
         "qty": "Use 3 large bananas, 75 g of melted butter, and bake at 175°C for about 55 minutes.",
         "caveat": "Let it cool in the tin first, because hot tins and steam can scald your hands.",
         "ask": "Is your current loaf dry all through or only at the edges?",
         "special": "You can substitute half the butter with Greek yogurt for extra moisture."},
        {"q": "How do I cook rice so it isn't sticky?",
         "steps": ["rinse the rice until the water runs clear", "simmer it covered on low heat", "let it steam off the heat"],
         "qty": "Use 1 cup of rice to 1.5 cups of water and simmer for 12 minutes.",
         "caveat": "Cool leftover rice quickly and refrigerate it, since rice left out can cause food poisoning.",
         "ask": "What kind of rice are you cooking, basmati or short grain?",
         "special": "If you run out of stock, a substitute of water with a pinch of salt and a bay leaf works well."},
    ],
    "travel": [
        {"q": "How should I plan a first trip to Japan?",
         "steps": ["pick two or three cities", "book a rail pass if you will travel far", "reserve popular sights in advance"],
         "qty": "Plan 10 days: 4 in Tokyo, 3 in Kyoto and 3 in Osaka.",
         "caveat": "Keep your passport on you at all times, as it is a legal requirement for visitors.",
         "ask": "What time of year are you planning to travel?",
         "special": "Budget around 150 USD a day, including about 80 USD for a mid-range hotel."},
        {"q": "What's the best way to get around Europe by train?",
         "steps": ["decide on your route", "compare a rail pass with single tickets", "reserve seats on high-speed trains"],
         "qty": "Expect trips of 2 to 4 hours between major cities and book 2 weeks ahead.",
         "caveat": "Watch your luggage on night trains, where theft from sleeping passengers is common.",
         "ask": "How many countries do you want to visit?",
         "special": "A 7-day rail pass costs roughly 300 EUR, while cheap advance tickets start at 20 EUR."},
        {"q": "How do I avoid jet lag on a long flight?",
         "steps": ["shift your sleep before you leave", "drink water on the flight", "get daylight when you land"],
         "qty": "Move your bedtime by 1 hour a day for 3 days before a 9-hour flight.",
         "caveat": "Avoid mixing sleeping pills and alcohol on a plane, which can be dangerous.",
         "ask": "Are you flying east or west?",
         "special": "Paying about 60 USD more for a seat with extra legroom can be worth it on long flights."},
        {"q": "What should I pack for a week of hiking in Scotland?",
         "steps": ["bring waterproof layers", "pack broken-in boots", "carry a map and a compass"],
         "qty": "Pack 3 base layers, 2 pairs of socks per day of rain, and 2 litres of water capacity.",
         "caveat": "Tell someone your route, as the weather in the Highlands can turn dangerous fast.",
         "ask": "Will you stay in hostels or camp?",
         "special": "Hostels cost about 25 GBP a night, so a week of hiking can be done for under 300 GBP."},
    ],
    "software": [
        {"q": "How do I read a large CSV file in Python without running out of memory?",
         "steps": ["read the file in chunks", "process each chunk and keep only what you need", "write results out as you go"],
         "qty": "A chunk size of 100,000 rows keeps memory under about 500 MB for most files.",
         "caveat": "Back up the original file before you run a script that writes output next to it.",
         "ask": "Roughly how large is the file, and what do you need to compute?",
         "special": "```python\nimport pandas as pd\nfor chunk in pd.read_csv('big.csv', chunksize=100_000):\n    process(chunk)\n```"},
        {"q": "How can I undo my last git commit?",
         "steps": ["check whether the commit was pushed", "use git reset for a local commit", "use git revert for a pushed one"],
         "qty": "git reset --soft HEAD~1 undoes exactly 1 commit and keeps all its changes staged.",
         "caveat": "Never force-push a rewritten history to a shared branch, since it can destroy others' work.",
         "ask": "Have you already pushed the commit to a shared remote?",
         "special": "```bash\ngit reset --soft HEAD~1\n```"},
        {"q": "Why is my SQL query so slow?",
         "steps": ["look at the query plan", "add an index on the filtered columns", "avoid selecting columns you don't need"],
         "qty": "An index can turn a 30-second full scan into a lookup of a few milliseconds.",
         "caveat": "Test index changes on a copy first, as building an index can lock a production table.",
         "ask": "Which database are you using, and how many rows does the table have?",
         "special": "```sql\nCREATE INDEX idx_orders_customer ON orders (customer_id);\n```"},
        {"q": "How do I make an HTTP request retry on failure in JavaScript?",
         "steps": ["wrap the request in a loop", "wait longer after each failure", "give up after a fixed number of tries"],
         "qty": "Retry 3 times, waiting 1, 2 and then 4 seconds.",
         "caveat": "Don't retry requests that are not idempotent, such as payments, or you may charge twice.",
         "ask": "Are you using fetch or a library such as axios?",
         "special": "```javascript\nfor (let i = 0; i < 3; i++) {\n  try { return await fetch(url); } catch (e) { await sleep(2 ** i * 1000); }\n}\n```"},
    ],
    "legal": [
        {"q": "My landlord won't return my security deposit. What can I do?",
         "steps": ["ask for the deposit back in writing", "gather your evidence such as photos and the lease", "file a claim in small claims court"],
         "qty": "Many states require landlords to return deposits within 14 to 30 days of move-out.",
         "caveat": "This is general information, not legal advice; talk to a local tenant lawyer before you act.",
         "ask": "Which state or country do you live in?",
         "special": "In California, Civil Code section 1950.5 sets the rules and deadlines for deposits."},
        {"q": "Can my employer fire me for posting about work on social media?",
         "steps": ["check your employer's social media policy", "consider whether the post was about working conditions", "keep copies of the posts and any messages"],
         "qty": "Complaints to the labor board generally must be filed within 6 months.",
         "caveat": "This is not legal advice, and firing rules vary; consult an employment lawyer about your case.",
         "ask": "Was your post about pay or working conditions shared with coworkers?",
         "special": "Section 7 of the National Labor Relations Act protects employees who discuss working conditions together."},
        {"q": "How do I make a simple will?",
         "steps": ["list your assets and who should get them", "choose an executor", "sign the will in front of witnesses"],
         "qty": "Most places require 2 adult witnesses who are not beneficiaries.",
         "caveat": "A will that is not signed correctly can be invalid, so have a lawyer check it.",
         "ask": "Do you have children or property in more than one country?",
         "special": "In England and Wales, section 9 of the Wills Act 1837 sets out the signing requirements."},
        {"q": "I got a parking ticket I think is unfair. How do I contest it?",
         "steps": ["read the ticket for the deadline and the process", "collect photos of the signs and the spot", "submit a written appeal"],
         "qty": "You usually have 21 to 28 days to appeal, and the fine may double if you miss it.",
         "caveat": "Don't ignore the ticket while you appeal, since unpaid fines can lead to extra penalties.",
         "ask": "Which city issued the ticket?",
         "special": "The official guidance on appeals is published by the city's parking authority under its traffic regulations."},
    ],
}


def domain_concepts(domain: str) -> list[PlantedConcept]:
    """The concepts that can appear in a domain: the shared ones and that domain's own."""
    return [c for c in CONCEPTS if c.domains is None or domain in c.domains]


def _compose(topic: dict[str, Any], present: set[str], rng: random.Random, *, bold: bool = False,
             elaborations: int = 0) -> str:
    """Write one response that carries exactly the concepts in ``present``, its steps in bold when ``bold``,
    lengthened by ``elaborations`` neutral sentences."""
    parts: list[str] = []
    if "polite_opener" in present:
        parts.append(rng.choice(_OPENERS))
    steps = [f"**{s}**" for s in topic["steps"]] if bold else topic["steps"]
    if "numbered_list" in present:
        intro = "Here is what to do:"
        body = intro + "\n" + "\n".join(f"{i}. {_capitalise(s)}." for i, s in enumerate(steps, 1))
    else:
        body = f"You should {steps[0]}, then {steps[1]}, and finally {steps[2]}."
    if "hedging" in present:
        body = rng.choice(_HEDGES) + " " + body[0].lower() + body[1:]
    parts.append(body)
    if elaborations:
        parts.append(" ".join(rng.sample(_ELABORATIONS, elaborations)))
    if "concrete_quantities" in present:
        parts.append(topic["qty"])
    for special in ("ingredient_substitution", "budget_estimate", "code_block", "cites_law"):
        if special in present:
            parts.append(topic["special"])
    if "safety_caveat" in present:
        parts.append(topic["caveat"])
    if "clarifying_question" in present:
        parts.append(topic["ask"])
    if "filler" in present:
        parts.append(rng.choice(_FILLER))
    return "\n\n".join(parts)


def _capitalise(step: str) -> str:
    at = 2 if step.startswith("**") else 0
    return step[:at] + step[at].upper() + step[at + 1:]


def _sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


def make_demo_pairs(pairs_per_domain: int = 30, *, seed: int = 0,
                    domains: tuple[str, ...] = DOMAINS) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Generate pairs and their truth.

    Returns
    -------
    pairs : list of dict
        Records with ``id, domain, prompt, response_a, response_b, label`` (``a`` or ``b``).
    truth : dict
        The concepts and properties with their planted weights, and for every pair the concepts
        each response carries, its features (concepts and measured properties) and its true
        P(A preferred).
    """
    import pandas as pd

    from .measured import BY_NAME

    unknown = [d for d in domains if d not in _TOPICS]
    if unknown:
        raise ValueError(f"unknown demo domain(s) {unknown}; choose from {list(_TOPICS)}")
    rng = random.Random(seed)
    drawn: list[dict[str, Any]] = []
    for domain in domains:
        concepts = domain_concepts(domain)
        for index in range(pairs_per_domain):
            topic = _TOPICS[domain][index % len(_TOPICS[domain])]
            while True:
                present_a = {c.name for c in concepts if rng.random() < c.rate}
                present_b = {c.name for c in concepts if rng.random() < c.rate}
                if present_a != present_b:
                    break
            texts = [_compose(topic, present, rng, bold=rng.random() < BOLD_RATE,
                              elaborations=rng.randint(0, MAX_ELABORATIONS)) for present in (present_a, present_b)]
            drawn.append({"domain": domain, "topic": topic, "present": (present_a, present_b), "texts": texts})
    # the properties' features are preflens's measured concepts of the same names, on the final texts
    side_a = pd.Series([d["texts"][0] for d in drawn], dtype=object)
    side_b = pd.Series([d["texts"][1] for d in drawn], dtype=object)
    measured = {p.name: BY_NAME[p.name].pair_feature(side_a, side_b) for p in PROPERTIES}

    pairs: list[dict[str, Any]] = []
    pair_truth: dict[str, Any] = {}
    for k, d in enumerate(drawn):
        domain, (present_a, present_b), (response_a, response_b) = d["domain"], d["present"], d["texts"]
        concepts = domain_concepts(domain)
        weights = {c.name: c.shared_weight + c.domain_weights.get(domain, 0.0) for c in concepts}
        features: dict[str, float] = {c.name: int(c.name in present_a) - int(c.name in present_b) for c in concepts}
        features.update({p.name: round(float(measured[p.name][k]), 6) for p in PROPERTIES})
        weights.update({p.name: p.weight for p in PROPERTIES})
        p_a = _sigmoid(sum(weights[n] * x for n, x in features.items()))
        label = "a" if rng.random() < p_a else "b"
        pair_id = content_id(domain, d["topic"]["q"], response_a, response_b)
        pairs.append({"id": pair_id, "domain": domain, "prompt": d["topic"]["q"],
                      "response_a": response_a, "response_b": response_b, "label": label})
        pair_truth[pair_id] = {
            "concepts_a": sorted(present_a), "concepts_b": sorted(present_b),
            "features": {n: x for n, x in features.items() if x}, "p_a": round(p_a, 6),
        }
    bayes = sum(max(t["p_a"], 1 - t["p_a"]) for t in pair_truth.values()) / max(len(pair_truth), 1)
    truth = {
        "format": "preflens-demo-truth/2",
        "seed": seed,
        "pairs_per_domain": pairs_per_domain,
        "domains": list(domains),
        "model": "P(A preferred) = sigmoid(sum_j (b_j + s_dj) * (present_j(A) - present_j(B)) "
                 "+ sum_k w_k * measured_k(A, B)), measured_k being preflens's measured concept k",
        "concepts": [
            {"name": c.name, "description": c.description, "shared": c.shared, "measured": False,
             "domains": list(c.domains) if c.domains else list(domains),
             "shared_weight": c.shared_weight,
             "domain_weights": {d: c.domain_weights.get(d, 0.0) for d in domains
                                if c.domains is None or d in c.domains}}
            for c in CONCEPTS
        ] + [
            {"name": p.name, "description": p.description, "shared": True, "measured": True,
             "domains": list(domains), "shared_weight": p.weight, "domain_weights": {d: 0.0 for d in domains}}
            for p in PROPERTIES
        ],
        "bayes_accuracy": round(bayes, 4),
        "pairs": pair_truth,
    }
    return pairs, truth


def write_demo_data(folder: str | Path, pairs_per_domain: int = 30, *, seed: int = 0, oracle: bool = False) -> Path:
    """Write ``pairs.jsonl`` and ``truth.json`` into ``folder``; returns the pairs file.

    With ``oracle=True`` also ``concepts.json`` (the planted concepts) and
    ``oracle_features.parquet`` (their true features), to test the later stages on their own; the
    planted measured properties are what ``preflens measure RUN --measured length,emphasis`` gives.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pairs, truth = make_demo_pairs(pairs_per_domain, seed=seed)
    pairs_path = folder / "pairs.jsonl"
    with pairs_path.open("w", encoding="utf-8") as out:
        for pair in pairs:
            out.write(json.dumps(pair, ensure_ascii=False) + "\n")
    (folder / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    if oracle:
        demo_concepts(truth).save(folder / "concepts.json")
        oracle_features(truth).to_parquet(folder / "oracle_features.parquet", index=False)
    return pairs_path


def llm_concepts(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The planted concepts an LLM reads (the truth's concepts less its measured properties)."""
    return [c for c in truth["concepts"] if not c.get("measured")]


def planted_properties(truth: dict[str, Any]) -> list[dict[str, Any]]:
    """The planted measured properties (length, formatting): preflens's measured concepts of these names."""
    return [c for c in truth["concepts"] if c.get("measured")]


def demo_concepts(truth: dict[str, Any], *, properties: bool = False) -> ConceptSet:
    """The planted concepts as a concept set (what a perfect discovery stage would find).

    With ``properties`` also the planted measured properties, as measured concepts.
    """
    from .measured import BY_NAME

    concepts = [Concept(name=c["name"], definition=c["description"], shared=c["shared"],
                        domains=[] if c["shared"] else list(c["domains"])) for c in llm_concepts(truth)]
    if properties:
        concepts += [BY_NAME[c["name"]].concept() for c in planted_properties(truth)]
    return ConceptSet(concepts, {"source": "planted concepts of the demo data"})


def oracle_features(truth: dict[str, Any], *, properties: bool = False) -> Any:
    """The true feature matrix, present(A) - present(B) (what a perfect representation would give).

    With ``properties`` also the planted measured properties' features (what the measured stage gives).
    """
    import pandas as pd

    names = [c["name"] for c in (truth["concepts"] if properties else llm_concepts(truth))]
    rows = [{"id": pair_id, **{n: float(info["features"].get(n, 0)) for n in names}}
            for pair_id, info in truth["pairs"].items()]
    return pd.DataFrame(rows, columns=["id", *names])


def demo_data_path() -> Path:
    """The bundled demo pairs (4 domains x 30 pairs, seed 0); ``truth.json`` lies beside it."""
    return Path(str(resources.files("preflens") / "demo_data" / "pairs.jsonl"))


def load_truth(pairs_path: str | Path) -> dict[str, Any]:
    """The ``truth.json`` next to a demo pairs file."""
    path = Path(pairs_path).with_name("truth.json")
    return json.loads(path.read_text(encoding="utf-8"))  # type: ignore[no-any-return]


# --------------------------------------------------------------------------------------------
# How well a run recovered the truth
# --------------------------------------------------------------------------------------------

MATCH_THRESHOLD = 0.5
"""A run concept stands for a planted one when their texts' MiniLM cosine is at least this."""


VALUE_MATCH = 0.5  # correlation of a run concept's feature with a planted concept's true feature


def one_to_one(scores: list[tuple[float, str, str]]) -> dict[str, tuple[str, float]]:
    """Planted concept -> (run column, r): the column whose pair features correlate best with its true
    features (from :func:`value_scores`), each run column standing for at most one planted concept,
    the best first. This is how discovered concepts are matched: by what they measure on the data, not
    their name. A column stands only for the planted concept it follows best: a column that follows
    concrete quantities at 0.68 and, through their numbers, budget estimates at 0.54 does not stand
    for the budget estimates when another column took the quantities."""
    best: dict[str, str] = {}
    for _, planted_name, column in scores:  # best first
        best.setdefault(column, planted_name)
    matches: dict[str, tuple[str, float]] = {}
    used: set[str] = set()
    for r, planted_name, column in scores:
        if planted_name not in matches and column not in used and best[column] == planted_name:
            matches[planted_name] = (column, round(r, 3))
            used.add(column)
    return matches


def value_scores(truth: dict[str, Any], ids: Any, X: Any, domains: Any, skip: tuple[str, ...] = ()
                 ) -> list[tuple[float, str, str]]:
    """(r, planted concept, run column) for every pair at r >= :data:`VALUE_MATCH`, best first; r is
    over the pairs of the planted concept's domains (``domains``: each pair's), where the planted
    concept can occur: elsewhere its feature is 0 whatever the run's column says."""
    import numpy as np

    ids = list(ids)
    in_truth = np.array([i in truth["pairs"] for i in ids])
    domains = np.asarray(domains, dtype=object)
    columns = [c for c in X.columns if c not in skip]
    scores = []
    for planted in truth["concepts"]:
        if planted["name"] in skip:
            continue
        applies = in_truth & np.isin(domains, planted["domains"])
        true = np.array([truth["pairs"][i]["features"].get(planted["name"], 0) if ok else np.nan
                         for i, ok in zip(ids, applies, strict=True)], float)
        rows = ~np.isnan(true)
        if rows.sum() < 3 or np.std(true[rows]) == 0:
            continue
        for column in columns:
            values = X[column].to_numpy(float)
            ok = rows & ~np.isnan(values)
            if ok.sum() >= 3 and np.std(values[ok]) > 0:
                r = float(np.corrcoef(values[ok], true[ok])[0, 1])
                if r >= VALUE_MATCH:
                    scores.append((r, planted["name"], column))
    return sorted(scores, reverse=True)


def also_matching(scores: list[tuple[float, str, str]], matches: dict[str, tuple[str, float]],
                  candidates: set[str]) -> list[dict[str, Any]]:
    """Run columns among ``candidates`` (discovered concepts) that match no planted concept one-to-one
    but follow one that another column matched better: each with its best such planted concept."""
    used = {column for column, _ in matches.values()}
    found: dict[str, dict[str, Any]] = {}
    for r, planted_name, column in scores:
        if column in candidates and column not in used and column not in found and planted_name in matches:
            found[column] = {"concept": column, "planted": planted_name, "r": round(r, 3),
                             "matched_by": matches[planted_name][0], "matched_r": matches[planted_name][1]}
    return list(found.values())


def match_concepts(truth: dict[str, Any], concepts: ConceptSet) -> tuple[dict[str, tuple[str, float]], str]:
    """For each planted concept, the run concept that stands for it, and how they were matched.

    The same name matches at once. Otherwise the best run concept by the all-MiniLM-L6-v2 cosine
    of "name: definition" against the planted description, when at least :data:`MATCH_THRESHOLD`
    (the 'embed' extra); without it, by the Jaccard overlap of word stems (at least 0.3).
    """
    import numpy as np

    run_names = concepts.names
    matches: dict[str, tuple[str, float]] = {}
    rest = []
    for planted in truth["concepts"]:
        if planted["name"] in run_names:
            matches[planted["name"]] = (planted["name"], 1.0)
        else:
            rest.append(planted)
    if not rest or not run_names:
        return matches, "name"
    run_texts = [f"{c.name.replace('_', ' ')}: {c.definition}" for c in concepts.concepts]
    planted_texts = [f"{p['name'].replace('_', ' ')}: {p['description']}" for p in rest]
    from .embeddings import embeddings_available

    if embeddings_available():
        from .embeddings import embed

        vectors = embed(planted_texts + run_texts)
        vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        similarity = vectors[: len(rest)] @ vectors[len(rest):].T
        method, threshold = "name, then all-MiniLM-L6-v2 cosine", MATCH_THRESHOLD
    else:
        from .discover import _stems

        planted_stems = [_stems(t) for t in planted_texts]
        run_stems = [_stems(t) for t in run_texts]
        similarity = np.array([[len(a & b) / max(len(a | b), 1) for b in run_stems] for a in planted_stems])
        method, threshold = "name, then word-stem overlap", 0.3
    for i, planted in enumerate(rest):
        j = int(np.argmax(similarity[i]))
        if similarity[i, j] >= threshold:
            matches[planted["name"]] = (run_names[j], round(float(similarity[i, j]), 3))
    return matches, method


def recovery(truth: dict[str, Any], pairs: Any, inputs: Any, concepts: ConceptSet, models: dict[str, Any],
             mechanism: str | None = None, explanation: Any = None) -> dict[str, Any]:
    """How far a run recovered the planted concepts, features and weights of demo data.

    ``inputs`` is the run's :class:`preflens.fit.ModelInputs`; ``models`` the fitted HMDR per
    mechanism. The weights are checked on ``mechanism`` (default: ``human`` or the first), whose
    labels the planted model drew. Also fits HMDR on the *true* features of the same pairs, to tell
    the representation's errors from what the number of pairs allows. The planted measured
    properties (length, formatting) are checked apart: is the run's measured concept of that name
    in the model, and does each domain's 95% bootstrap interval (from ``explanation``, the
    mechanism's :class:`~preflens.explain.GlobalExplanation`) hold the planted weight.
    """
    import numpy as np

    from .fit import FitSettings, fit_mechanism, model_inputs

    properties = planted_properties(truth)
    truth = {**truth, "concepts": llm_concepts(truth)}  # the concepts an LLM reads; properties apart
    mechanism = mechanism or ("human" if "human" in models else next(iter(models), None))
    frame = pairs.frame
    in_truth = frame["id"].isin(list(truth["pairs"])).to_numpy()
    ids = frame["id"].to_numpy()
    given = concepts.meta.get("stage") != "discover"  # discovery marks the concept sets it writes
    property_names = tuple(p["name"] for p in properties)
    also: list[dict[str, Any]] = []
    if given:
        matches, method = match_concepts(truth, ConceptSet([c for c in concepts.concepts if c.name not in property_names],
                                                             dict(concepts.meta)))
    else:
        scores = value_scores(truth, ids, inputs.X, frame["domain"].to_numpy(), skip=property_names)
        matches = one_to_one(scores)
        method = (f"values: a correlation of at least {VALUE_MATCH} between the run's features and the planted ones, "
                  "on the pairs of the planted concept's domains")
        discovered = set(concepts.names) - _measured_names(concepts) - set(property_names)
        also = also_matching(scores, matches, discovered)
    model = models.get(mechanism) if mechanism else None
    names = list(inputs.X.columns)
    rows = []
    all_differing = all_right = 0
    for planted in truth["concepts"]:
        matched = matches.get(planted["name"])
        row: dict[str, Any] = {"planted": planted["name"], "matched": matched[0] if matched else None,
                               "match_score": matched[1] if matched else None, "differing_cells": None,
                               "sign_accuracy": None, "noise": None,
                               "true_weights": _weights_text(planted["shared_weight"], planted["domain_weights"]),
                               "fitted_weights": None}
        applies = in_truth & frame["domain"].isin(planted["domains"]).to_numpy()
        if matched:
            values = inputs.X[matched[0]].to_numpy(float)
            true = np.array([truth["pairs"][i]["features"].get(planted["name"], 0) if ok else 0
                             for i, ok in zip(ids, applies, strict=True)], float)
            differing = applies & (true != 0)
            right = int(np.sum(np.sign(values[differing]) == true[differing]))
            all_differing += int(differing.sum())
            all_right += right
            row["differing_cells"] = int(differing.sum())
            row["sign_accuracy"] = right / int(differing.sum()) if differing.any() else None
            equal = applies & (true == 0)
            row["noise"] = round(float(np.abs(values[equal]).mean()), 3) if equal.any() else None
        if matched and model is not None:
            domains = [d for d in planted["domain_weights"] if d in set(model.domains_)]
            row["fitted_weights"] = ", ".join(f"{d} {model.coef_for(d)[names.index(matched[0])]:+.2f}"
                                              for d in domains)
        rows.append(row)
    columns = {p: names.index(m[0]) for p, m in matches.items()}
    weights = _weight_agreement(*_beta_cells(truth, model, columns))
    planted_names = {p["name"] for p in truth["concepts"]} | set(property_names)
    matched_run = {m[0] for m in matches.values()}
    extra_nonzero = []
    if model is not None:
        for j, name in enumerate(names):
            if name not in matched_run and name not in planted_names and (
                    abs(model.shared_coef_[j]) > 1e-9 or np.any(np.abs(model.domain_coef_[:, j]) > 1e-9)):
                extra_nonzero.append(name)

    # the planted model's accuracy on these pairs, and HMDR on their true features
    p_true = np.array([truth["pairs"][i]["p_a"] for i in ids[in_truth]])
    ceiling = float(np.mean(np.maximum(p_true, 1 - p_true))) if len(p_true) else None
    oracle = None
    if mechanism and in_truth.sum() >= 8:
        from .data import PairDataset

        subset = PairDataset(frame[in_truth])
        full_truth = {**truth, "concepts": truth["concepts"] + properties}
        planted_set = demo_concepts(full_truth, properties=True)
        features = oracle_features(full_truth, properties=True)
        oracle_inputs = model_inputs(subset, features, planted_set)
        run_controls = _controls(model, names)
        try:
            result = fit_mechanism(oracle_inputs, subset.labels(mechanism), mechanism,
                                   FitSettings(controls=[c for c in run_controls if c in planted_set.names] or None))
        except DataError:  # too few labels of one side: the reference is left out
            result = None
        if result is not None:
            best = max(result.cv_results or [{"mean_accuracy": None}], key=lambda r: r["mean_accuracy"] or 0)
            planted_columns = {p["name"]: j for j, p in enumerate(truth["concepts"])}
            oracle = {"cv_accuracy": best["mean_accuracy"],
                      "weights": _weight_agreement(*_beta_cells(truth, result.model, planted_columns))}

    confounders = [_property_recovery(p, model, names, explanation) for p in properties]
    others = [n for n in concepts.names if n not in property_names]
    n_planted = len(truth["concepts"])
    summary = [
        (f"Concepts: {len(matches)} of {n_planted} planted concepts are in the run's concept list, which was given "
         f"({concepts.meta.get('source') or 'a concept file'}), not discovered (matched by {method})." if given else
         f"Concepts: {len(matches)} of {n_planted} planted concepts are matched among the run's "
         f"{len(others)} concepts ({_by_source(matches, concepts)}; matched by {method}); "
         f"{len(others) - len(matches)} of the run's concepts match no planted one"
         + (f" (the planted measured properties, {', '.join(property_names)}, are checked apart)." if properties
            else ".")),
    ]
    if all_differing:
        per = [r["sign_accuracy"] for r in rows if r["sign_accuracy"] is not None]
        summary.append(f"Representation: where a planted concept differs between the two responses "
                       f"({all_differing} pair-concept cells), the feature has the right sign in "
                       f"{all_right / all_differing:.1%} of them (per concept {min(per):.0%} to {max(per):.0%}).")
    if model is not None:
        summary.append(f"Weights ({mechanism}): {_weights_sentence(weights)}")
        if extra_nonzero:
            summary.append(f"{len(extra_nonzero)} run concept(s) that match no planted concept got a non-zero "
                           f"weight: {', '.join(extra_nonzero[:8])}.")
    if also:
        summary.insert(1, "Discovered concepts that follow a planted concept another concept matched better: "
                       + "; ".join(f"{a['concept']} ↔ {a['planted']} (r = {a['r']:.2f}; matched by {a['matched_by']}, "
                                   f"{a['matched_r']:.2f})" for a in also) + ".")
    summary += [c["sentence"] for c in confounders]
    if ceiling is not None:
        summary.append(f"The planted model itself is right on {ceiling:.1%} of these {int(in_truth.sum())} pairs "
                       "(the ceiling of any explanation of these labels).")
    if oracle and oracle["cv_accuracy"] is not None:
        summary.append(f"Reference, with perfect features: HMDR on the true features of the same pairs reaches "
                       f"{oracle['cv_accuracy']:.1%} CV accuracy; {_weights_sentence(oracle['weights'])}")
    return {"mechanism": mechanism, "match_method": method, "concepts_found": len(matches),
            "concepts_planted": n_planted, "concepts_given": given, "differing_cells": all_differing,
            "sign_accuracy": all_right / all_differing if all_differing else None, "weights": weights,
            "extra_nonzero": extra_nonzero, "also_matching": also, "ceiling": ceiling, "oracle": oracle,
            "concepts": rows,
            "confounders": confounders, "controls": _controls(model, names),
            "summary": summary, "pairs": int(in_truth.sum())}


def _controls(model: Any, names: list[str]) -> list[str]:
    """The names of the model's controls (unpenalised concepts)."""
    import numpy as np

    mask = getattr(model, "control_mask_", None) if model is not None else None
    return [names[j] for j in np.flatnonzero(mask)] if mask is not None and len(mask) == len(names) else []


def _property_recovery(planted: dict[str, Any], model: Any, names: list[str], explanation: Any) -> dict[str, Any]:
    """Whether the model holds a planted measured property's weight: per domain, is it inside the 95% interval."""
    name, weight = planted["name"], float(planted["shared_weight"])
    row: dict[str, Any] = {"property": name, "planted_weight": weight, "in_model": False, "control": False,
                           "fitted_shared": None, "fitted": {}, "intervals": {}, "recovered_domains": None,
                           "domains": len(planted["domains"])}
    if model is None or name not in names:
        row["sentence"] = (f"Planted {name} (weight {weight:+.1f} in every domain): the run has no measured concept "
                           f"'{name}', so no weight could take it (add it with --measured {name} or --measured all).")
        return row
    j = names.index(name)
    row.update(in_model=True, control=name in _controls(model, names), fitted_shared=float(model.shared_coef_[j]))
    domains = [d for d in planted["domains"] if d in set(model.domains_)]
    row["fitted"] = {d: float(model.coef_for(d)[j]) for d in domains}
    role = "fitted as a control, unpenalised" if row["control"] else "not a control: penalised like any concept"
    values = list(row["fitted"].values())
    fitted = (f"{values[0]:+.2f} in every domain" if values and max(values) - min(values) < 5e-3
              else ", ".join(f"{d} {w:+.2f}" for d, w in row["fitted"].items()))
    head = f"Planted {name} (weight {weight:+.1f} in every domain; {role}): fitted {fitted}"
    frame = getattr(explanation, "frame", None)
    if frame is None or "ci_low" not in frame.columns:
        row["sentence"] = head + "; no bootstrap intervals to check it against (run with --bootstrap N)."
        return row
    inside = 0
    for d in domains:
        hit = frame[(frame["scope"] == d) & (frame["concept"] == name)]
        low, high = (float(hit["ci_low"].iloc[0]) / 50.0, float(hit["ci_high"].iloc[0]) / 50.0) if len(hit) else (0.0, 0.0)
        row["intervals"][d] = [low, high]
        inside += int(low <= weight <= high)
    row["recovered_domains"] = inside
    verdict = ("recovered: the planted weight is inside the 95% bootstrap interval in every domain" if inside == len(domains)
               else f"the planted weight is inside the 95% bootstrap interval in {inside} of {len(domains)} domains")
    row["sentence"] = f"{head}; {verdict}."
    return row


def _measured_names(concepts: ConceptSet) -> set[str]:
    """The concepts a rule measures (no LLM)."""
    return {c.name for c in concepts.concepts if "measured" in c.provenance}


def _by_source(matches: dict[str, tuple[str, float]], concepts: ConceptSet) -> str:
    """How many matches are discovered (LLM) concepts and how many measured ones (no LLM)."""
    measured = _measured_names(concepts)
    by_measured = sum(1 for name, _ in matches.values() if name in measured)
    return f"{len(matches) - by_measured} by discovered concepts, {by_measured} by measured concepts"


def _beta_cells(truth: dict[str, Any], model: Any, columns: dict[str, int]) -> tuple[Any, Any]:
    """Planted and fitted b + s_d for every (planted concept, domain); 0 where a concept has no column."""
    import numpy as np

    known = set(model.domains_) if model is not None else set()
    true, fitted = [], []
    for planted in truth["concepts"]:
        j = columns.get(planted["name"])
        for domain, extra in planted["domain_weights"].items():
            true.append(planted["shared_weight"] + extra)
            fitted.append(float(model.coef_for(domain)[j]) if j is not None and domain in known else 0.0)
    return np.array(true), np.array(fitted)


def _weights_text(shared: float, per_domain: dict[str, float]) -> str:
    return f"{shared:+.1f}; " + ", ".join(f"{d} {shared + w:+.1f}" for d, w in per_domain.items())


def _weight_agreement(true: Any, fitted: Any) -> dict[str, Any]:
    """Sign agreement, support precision and recall, and correlation of (concept, domain) weights."""
    import numpy as np

    true_nz, fit_nz = np.abs(true) > 1e-9, np.abs(fitted) > 1e-9
    both = true_nz & fit_nz
    correlation = None
    if len(true) > 2 and np.std(true) > 0 and np.std(fitted) > 0:
        correlation = float(np.corrcoef(true, fitted)[0, 1])
    return {"cells": len(true), "true_nonzero": int(true_nz.sum()), "fitted_nonzero": int(fit_nz.sum()),
            "both_nonzero": int(both.sum()),
            "sign_agreement": float(np.mean(np.sign(true[both]) == np.sign(fitted[both]))) if both.any() else None,
            "precision": float(both.sum() / fit_nz.sum()) if fit_nz.any() else None,
            "recall": float(both.sum() / true_nz.sum()) if true_nz.any() else None,
            "correlation": correlation}


def _weights_sentence(w: dict[str, Any]) -> str:
    def pct(v: Any) -> str:
        return "–" if v is None else f"{v:.0%}"

    return (f"{w['fitted_nonzero']} of {w['cells']} (concept, domain) weights are non-zero against "
            f"{w['true_nonzero']} planted; the sign is right on {pct(w['sign_agreement'])} of the "
            f"{w['both_nonzero']} non-zero in both; support precision {pct(w['precision'])}, recall "
            f"{pct(w['recall'])}; correlation with the planted weights "
            + ("–" if w["correlation"] is None else f"{w['correlation']:.2f}") + ".")
