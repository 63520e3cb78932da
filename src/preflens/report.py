"""The run report: one self-contained HTML file and a Markdown summary, built from a run folder.

:func:`collect` reads what the stages wrote (pairs, concepts, features, models, explanations,
evaluation, ``run.json``) into plain data; :func:`render_html` and :func:`render_markdown` turn that
data into files; :func:`write_report` does all three.

Everything that comes from the data (prompts, responses, concept names and definitions, domain and
mechanism names) is untrusted. The HTML template escapes it (Jinja2 autoescape), the data the page's
scripts read sits in a ``<script type="application/json">`` block with ``<``, ``>`` and ``&``
written as ``\\u003c``-style escapes, the example viewer only ever sets ``textContent``, and strings
handed to Plotly (which reads a few HTML-like tags in labels) are entity-escaped first.
"""

from __future__ import annotations

import html
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ._version import __version__
from .errors import ConfigError

REPORT_FORMAT = "preflens-report/1"
FIRED_THRESHOLD = 0.2
"""A concept "fires" on a pair when its feature value is at least this far from 0.

Comp-rep values are -1, 0 or 1; Presence-rep values are P(yes | A) - P(yes | B), which a small model
keeps well inside [-1, 1]. On the demo with the embedded model, |value| >= 0.2 held on 40% of the cells
where the planted concept differs and on 7% of those where it does not.
"""
TOP_CONCEPTS = 10
MAX_VIEWER_PAIRS = 2000
EXAMPLES_PER_CONCEPT = 3


@dataclass
class ReportFiles:
    """Where the report went, and the data it was made from."""

    html: Path
    markdown: Path
    data: Path
    content: dict[str, Any]


# --------------------------------------------------------------------------------------------
# Collect
# --------------------------------------------------------------------------------------------


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, np.generic):
        return _finite(value.item())
    return value


def _round(value: Any, digits: int = 4) -> Any:
    value = _finite(value)
    return round(value, digits) if isinstance(value, float) else value


def _label_of(value: Any) -> str | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else str(value)


def _stage_summary(run_json: dict[str, Any]) -> dict[str, Any]:
    """Per stage: status, seconds and LLM usage; plus the totals."""
    stages, totals = [], {"calls": 0, "cache_hits": 0, "prompt_tokens": 0, "completion_tokens": 0,
                          "cost_usd": 0.0, "seconds": 0.0}
    for name, record in run_json.get("stages", {}).items():
        llm = record.get("llm") or {}
        row = {"stage": name, "status": record.get("status"), "seconds": record.get("seconds"),
               "calls": llm.get("calls"), "cache_hits": llm.get("cache_hits"),
               "prompt_tokens": llm.get("prompt_tokens"), "completion_tokens": llm.get("completion_tokens"),
               "cost_usd": llm.get("cost_usd"), "llm": llm.get("llm"), "finished_utc": record.get("finished_utc")}
        stages.append(row)
        for key in ("calls", "cache_hits", "prompt_tokens", "completion_tokens", "cost_usd"):
            totals[key] += row[key] or 0
        totals["seconds"] += row["seconds"] or 0.0
    totals["seconds"] = round(totals["seconds"], 1)
    totals["cost_usd"] = round(totals["cost_usd"], 6)
    return {"stages": stages, "totals": totals}


def _concept_catalogue(pairs: Any, X: pd.DataFrame, concepts: Any, domains: list[str]) -> list[dict[str, Any]]:
    """Name, definition, scope, how often it fired (overall and per domain), and example pairs."""
    frame = pairs.frame
    pair_domains = frame["domain"].to_numpy(dtype=object)
    catalogue = []
    for concept in concepts.concepts:
        values = X[concept.name].to_numpy(float)
        applies = frame["domain"].map({d: concept.belongs_to(d) for d in domains}).to_numpy(dtype=bool)
        fired = (np.abs(values) >= FIRED_THRESHOLD) & applies
        per_domain = {}
        for domain in domains:
            rows = applies & (pair_domains == domain)
            if rows.any():
                per_domain[domain] = _round(float(fired[rows].mean()), 3)
        order = np.argsort(-np.abs(values) * applies, kind="stable")
        examples = [{"id": str(frame["id"].iloc[i]), "value": _round(float(values[i]), 3)}
                    for i in order[:EXAMPLES_PER_CONCEPT] if fired[i]]
        catalogue.append({
            "name": concept.name, "definition": concept.definition, "shared": bool(concept.shared),
            "domains": list(domains) if concept.shared else list(concept.domains),
            "frequency": _round(float(fired[applies].mean()) if applies.any() else 0.0, 3),
            "frequency_by_domain": per_domain, "examples": examples,
        })
    return catalogue


def _evidence_text(candidate: dict[str, Any]) -> str:
    """The strongest piece of a discovered concept's evidence, in a few words."""
    best = max(candidate["evidence"], key=lambda e: abs(e["z"]))
    shown = "; ".join(f"“{x[:80]}”" for x in best["examples"][:2])
    side = "preferred" if best["z"] > 0 else "rejected"
    return (f"{best['source']}: {shown} (in {best['pairs']} pairs the responses differ in it; the carrier was "
            f"{side} in {max(best['carrier_won'], best['pairs'] - best['carrier_won'])}; z {best['z']:+.1f})")


def _add_discovery_and_representation(data: dict[str, Any], candidates: list[dict[str, Any]]) -> None:
    """Each catalogue entry's evidence (discovery from evidence) and its share of response length
    (representation.json); the rejected candidates, with why, for the folded list."""
    from .distill import uncertain_labels

    kept = {c["name"]: c for c in candidates if c.get("status") == "kept"}
    representation = data.get("representation") or {}
    statistics = {s["concept"]: s for s in representation.get("concepts", [])}
    distilled = {d["concept"]: d for d in representation.get("distillation") or []}
    for entry in data["concepts"]:
        candidate = kept.get(entry["name"])
        entry["evidence"] = _evidence_text(candidate) if candidate and candidate.get("evidence") else None
        stats = statistics.get(entry["name"]) or {}
        entry["length_correlation"] = stats.get("length_correlation")
        entry["mostly_length"] = bool(stats.get("mostly_length"))
        entry["closest_measured"] = stats.get("closest_measured")
        entry["measured_correlation"] = stats.get("measured_correlation")
        labels = distilled.get(entry["name"])  # distilled representation: asked, predicted, agreement
        entry["labels"] = None if labels is None else {
            "asked": labels["llm"], "predicted": labels["predicted"], "agreement": labels.get("cv_correlation"),
            "fallback": bool(labels.get("fallback")), "uncertain": uncertain_labels(labels)}
    data["rejected_candidates"] = [
        {"name": c["name"], "definition": c["definition"], "why": c["status"].removeprefix("rejected: "),
         "evidence": _evidence_text(c) if c.get("evidence") else ""}
        for c in candidates if c.get("status") != "kept"]


def uncertain_concepts(data: dict[str, Any]) -> dict[str, float | None]:
    """The catalogue's concepts with uncertain labels (see :func:`preflens.distill.uncertain_labels`):
    name -> the cross-validated agreement of their predicted values with the LLM."""
    return {c["name"]: c["labels"]["agreement"] for c in data["concepts"]
            if c.get("labels") and c["labels"]["uncertain"]}


def uncertain_sentence(uncertain: dict[str, float | None]) -> str:
    """What the report says of the concepts with uncertain labels."""
    from .distill import UNCERTAIN_BELOW

    shown = ", ".join(f"{name} {'unknown' if r is None else f'{r:.2f}'}" for name, r in uncertain.items())
    return (f"Uncertain labels (the correlation of predicted values with the LLM's answers, cross-validated): "
            f"{shown}. Distilled representation predicted most of these concepts' values with a model that "
            f"reproduces less than half of how the LLM's answers vary (a correlation below {UNCERTAIN_BELOW}), so "
            "their weights may rest on values the LLM would not give. Represent with --labeler llm to ask the LLM "
            "about every response.")


def _fit_summary(run: Path, mechanism: str, model: Any, inputs: Any, labels: pd.Series) -> dict[str, Any]:
    from .model import labels_to_y

    search_file = run / "models" / f"{mechanism}.search.json"
    cv_accuracy, evidence = None, None
    if search_file.exists():
        search = json.loads(search_file.read_text(encoding="utf-8"))
        results = search.get("cv_results") or []
        evidence = search.get("evidence")
        if results:
            cv_accuracy = max(r["mean_accuracy"] for r in results if r.get("mean_accuracy") is not None)
    usable = np.isin(labels_to_y(list(labels)), (0.0, 1.0))
    train_accuracy = model.score(inputs.X, labels, domains=inputs.domains) if usable.any() else None
    return {"mechanism": mechanism, "lambda_shared": _round(model.lambda_shared, 6),
            "lambda_domain": _round(model.lambda_domain, 6), "cv_accuracy": _round(cv_accuracy),
            "train_accuracy": _round(train_accuracy), "pairs": int(usable.sum()),
            "nonzero_shared": int(np.count_nonzero(model.shared_coef_)),
            "nonzero_domain": int(np.count_nonzero(model.domain_coef_)),
            "controls": [str(n) for n, c in zip(model.feature_names_in_, getattr(model, "control_mask_", []),
                                                strict=False) if c],
            "majority": _round(evidence["majority"]) if evidence else None,
            "reliable": evidence["reliable"] if evidence else None,
            "evidence": evidence["sentence"] if evidence else ""}


def collect(run_dir: str | Path, *, truth: dict[str, Any] | None = None, top: int = TOP_CONCEPTS,
            max_pairs: int = MAX_VIEWER_PAIRS, context: Any = None) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data, from the artifacts of the run folder.

    ``truth`` (the demo data's ``truth.json``; read from ``RUN/truth.json`` when there is one) adds
    what was planted in each pair to the pair viewer; the recovery section comes from
    ``recovery.json`` (the recovery stage). ``context`` is the :class:`preflens.pipeline.RunContext`
    to read from (default: a new one), so a run reads each artifact once.
    """
    from .compare import agreement_matrix
    from .explain import GlobalExplanation, explain_global, typical_differences
    from .pipeline import RunContext
    from .stages.explain import model_digest

    run = Path(run_dir)
    context = context or RunContext(run)
    needed = {"pairs.parquet": "preflens validate DATA --out RUN", "concepts.json": "preflens discover RUN",
              "features.parquet": "preflens represent RUN"}
    for name, fix in needed.items():
        if not context.exists(name):
            raise ConfigError(f"{run}: no {name} yet; run '{fix.replace('RUN', str(run))}' (or 'preflens run') first")
    pairs = context.pairs
    fitted = context.fitted_mechanisms()
    if not fitted:
        raise ConfigError(f"{run}: no fitted model yet; run 'preflens fit {run}' first")
    concepts = context.concepts
    inputs = context.inputs
    domains = sorted(set(pairs.frame["domain"]), key=str)
    run_json = json.loads((run / "run.json").read_text(encoding="utf-8")) if (run / "run.json").exists() else {}
    if truth is None and (run / "truth.json").exists():
        truth = json.loads((run / "truth.json").read_text(encoding="utf-8"))

    mechanisms, effects, fits, models = [], {}, [], {}
    for name in fitted:
        model = context.model(name)
        models[name] = model
        mechanisms.append(name)
        explanation_file = run / "explanations" / f"{name}.json"
        explanation = GlobalExplanation.from_json(explanation_file) if explanation_file.exists() else None
        current = explanation is not None and explanation.meta.get("model_sha256") == model_digest(context, name)
        if not current:  # none yet, or made from an earlier fit: the effects of this model, without intervals
            explanation = explain_global(model, units=typical_differences(inputs.X))
        assert explanation is not None
        effects[name] = [{k: _round(v) for k, v in row.items()} for row in explanation.frame.to_dict("records")]
        fits.append({**_fit_summary(run, name, model, inputs, pairs.labels(name)),
                     "bootstrap": int(((explanation.meta or {}).get("bootstrap") or {}).get("n_boot", 0)) if current else 0})

    # agreement between the mechanisms' labels and every model's predictions
    columns: dict[str, pd.Series] = {m: pairs.labels(m).reset_index(drop=True) for m in pairs.mechanisms}
    probabilities: dict[str, np.ndarray] = {}
    for name, model in models.items():
        p = model.predict_proba(inputs.X, domains=inputs.domains)[:, 1]
        probabilities[name] = p
        columns[f"HMDR({name})"] = pd.Series(np.where(p > 0.5, "a", np.where(p < 0.5, "b", "tie")), dtype=object)
    matrix = agreement_matrix(columns)
    agreement = {"names": list(matrix.index),
                 "values": [[_round(float(v), 4) for v in row] for row in matrix.to_numpy()]}

    # mechanisms x concepts: the effect in each scope (shared and per domain)
    comparison = None
    if len(mechanisms) > 1:  # rows: each mechanism's shared effects, then its effect in each domain
        rows, labels = [], []
        for m in mechanisms:
            for scope in ["shared", *domains]:
                lookup = {r["concept"]: r.get("p_preferred") for r in effects[m] if r["scope"] == scope}
                labels.append(f"{m} · {scope}")
                rows.append([round(100 * (lookup.get(c) or 0.5), 1) for c in concepts.names])
        comparison = {"concepts": concepts.names, "rows": labels, "effects": rows}

    evaluation = None
    if (run / "evaluation.json").exists():
        evaluation = json.loads((run / "evaluation.json").read_text(encoding="utf-8"))

    viewer = _viewer_pairs(pairs, inputs, models, probabilities, max_pairs)
    data: dict[str, Any] = {
        "format": REPORT_FORMAT,
        "title": f"preflens report: {run.resolve().name}",
        "created_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "preflens_version": __version__,
        "run_dir": str(run),
        "dataset": {**pairs.summary(), "source": (run_json.get("stages", {}).get("ingest", {})
                                                  .get("settings", {}).get("data"))},
        "domains": domains,
        "mechanisms": mechanisms,
        "concept_source": concepts.meta.get("source")
        or ("discovered" if concepts.meta.get("stage") == "discover" else ""),
        "concepts": _concept_catalogue(pairs, inputs.X, concepts, domains),
        "effects": effects,
        "fits": fits,
        "agreement": agreement,
        "comparison": comparison,
        "evaluation": evaluation,
        "run": _stage_summary(run_json),
        "representation": (json.loads((run / "representation.json").read_text(encoding="utf-8"))
                           if (run / "representation.json").exists() else None),
        "pairs": viewer,
        "pairs_total": len(pairs),
        "top": top,
        "recovery": None,
    }
    _add_discovery_and_representation(data, concepts.meta.get("candidates") or [])
    data["confounders"] = _current_confounders(context.json("confounders.json"), mechanisms)
    recovery = context.json("recovery.json")
    if recovery is not None and recovery.get("mechanism") in (*mechanisms, None):
        data["recovery"] = recovery
    if truth is not None:
        for pair in viewer:  # the viewer shows what was planted in each response
            planted = truth["pairs"].get(pair["id"])
            if planted:
                pair["truth"] = {k: planted[k] for k in ("concepts_a", "concepts_b", "p_a")}
    return data


def _current_confounders(confounders: dict[str, Any] | None, mechanisms: list[str]) -> dict[str, Any] | None:
    """The confounders stage's result for the mechanisms the report shows (None when it did not run)."""
    if not confounders:
        return None
    shown = {m: c for m, c in confounders.get("mechanisms", {}).items() if m in mechanisms}
    return {**confounders, "mechanisms": shown} if shown else None


def _viewer_pairs(pairs: Any, inputs: Any, models: dict[str, Any], probabilities: dict[str, np.ndarray],
                  max_pairs: int) -> list[dict[str, Any]]:
    """Per pair: the texts, the labels, and per model P(A) and the concepts pushing each way."""
    from .explain import explain_local

    frame = pairs.frame
    rows = np.arange(len(frame))
    if len(rows) > max_pairs:  # an even sample keeps every domain in view
        rows = np.linspace(0, len(frame) - 1, max_pairs).astype(int)
    explanations = {name: explain_local(model, inputs.X.iloc[rows], domains=inputs.domains[rows],
                                              ids=frame["id"].iloc[rows].astype(str).tolist())
                    for name, model in models.items()}
    out = []
    for position, i in enumerate(rows):
        record = frame.iloc[i]
        predictions = {}
        for name, local in explanations.items():
            data = local.data(position)
            pushes = [{"concept": c["concept"], "value": _round(c["value"], 3), "weight": _round(c["weight"], 3),
                       "contribution": _round(c["contribution"], 3), "shift": _round(c["p_shift"], 1)}
                      for c in data["concepts"] if abs(c["contribution"]) > 1e-9][:12]
            predictions[name] = {"p_a": _round(float(probabilities[name][i]), 4), "concepts": pushes}
        out.append({"id": str(record["id"]), "domain": str(record["domain"]), "prompt": str(record["prompt"]),
                    "response_a": str(record["response_a"]), "response_b": str(record["response_b"]),
                    "labels": {m: _label_of(record[f"label:{m}"]) for m in pairs.mechanisms},
                    "predictions": predictions})
    return out


# --------------------------------------------------------------------------------------------
# Figures (Plotly specs; strings entity-escaped because Plotly reads some HTML tags in labels)
# --------------------------------------------------------------------------------------------


def _p(text: Any) -> str:
    return html.escape(str(text), quote=False)


_SHARED_COLOUR, _DOMAIN_COLOUR = "#4c78a8", "#f58518"
_UNRELIABLE, _UNRELIABLE_DOMAIN = "#b8b8b8", "#d9d9d9"  # a fit no better than the majority side


_P_TICKS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.98, 0.99)


def _probability_axis(extent: float) -> dict[str, Any]:
    """An x axis in logits (so shared and domain parts stack) labelled in P(preferred), 50% at zero."""
    extent = max(extent, math.log(0.6 / 0.4))
    gap = 2.2 * extent / 9  # about nine labels across, however wide the range: no label overlaps the next
    upper: list[float] = []
    for p in (q for q in _P_TICKS if q > 0.5 and math.log(q / (1 - q)) <= extent * 1.05):
        if math.log(p / (1 - p)) - (math.log(upper[-1] / (1 - upper[-1])) if upper else 0.0) >= gap:
            upper.append(p)
    ticks = sorted([round(1 - p, 2) for p in upper] + [0.5] + upper)
    return {"zeroline": True, "tickvals": [math.log(p / (1 - p)) for p in ticks],
            "ticktext": [f"{p:.0%}" for p in ticks], "range": [-extent * 1.1, extent * 1.1],
            "title": {"text": "preferred when only this concept differs", "font": {"size": 11}}}


def effect_figure(rows: list[dict[str, Any]], scope: str, top: int, *, reliable: bool = True,
                  legend: bool = True, marked: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """Horizontal bars of a scope's top concepts: the shared and the domain part stacked, CI whiskers.

    The bars are weights times the concept's typical difference ``unit`` (logits, so the two parts add up);
    the axis reads them as how often the response showing the concept is preferred when the pair differs
    only in it by that much, so no label leaves 0-100%.
    ``reliable=False`` (a fit not clearly better than the majority side) draws them grey, titled as
    not significant. The names in ``marked`` (concepts with uncertain labels) get a dagger.
    """
    in_scope = [r for r in rows if r["scope"] == scope]
    chosen = [r for r in in_scope if abs(r["effect"] or 0) > 1e-9][:top][::-1]  # a zero bar is no top concept

    def logit(r: dict[str, Any], key: str) -> float:  # 50 x weight -> the logit at the typical difference
        value = r[key] if r.get(key) is not None else r["effect"]
        return float(value) / 50 * float(r.get("unit") or 1.0)

    names = [_p(r["concept"]) + (" †" if r["concept"] in marked else "") for r in chosen]
    readable = [[f"{100 * (r.get('p_preferred') or 0.5):.0f}%", f"{r.get('odds_ratio') or 1.0:.2f}"] for r in chosen]
    def hover(part: str) -> str:
        return ("%{y}<br>" + part + " part %{x:+.2f} logits<br>total: preferred %{customdata[0]}, odds ratio "
                "%{customdata[1]}<extra></extra>")

    data: list[dict[str, Any]] = [
        {"type": "bar", "orientation": "h", "name": "shared part", "y": names, "customdata": readable,
         "x": [logit(r, "shared_effect") for r in chosen],
         "marker": {"color": _SHARED_COLOUR if reliable else _UNRELIABLE}, "hovertemplate": hover("shared")},
    ]
    if scope != "shared":
        data.append({"type": "bar", "orientation": "h", "name": "domain part", "y": names, "customdata": readable,
                     "x": [logit(r, "domain_effect") for r in chosen],
                     "marker": {"color": _DOMAIN_COLOUR if reliable else _UNRELIABLE_DOMAIN},
                     "hovertemplate": hover("domain")})
    extent = max([abs(logit(r, "effect")) for r in chosen] + [0.0])
    if chosen and chosen[0].get("ci_low") is not None:
        lows = [logit(r, "ci_low") for r in chosen]
        highs = [logit(r, "ci_high") for r in chosen]
        extent = max([extent] + [abs(v) for v in lows + highs])
        spans = [[f"{100 * (r.get('p_low') or 0.5):.0f}%", f"{100 * (r.get('p_high') or 0.5):.0f}%"] for r in chosen]
        data.append({"type": "scatter", "mode": "markers", "name": "total, 95% CI", "y": names,
                     "x": [logit(r, "effect") for r in chosen], "customdata": spans,
                     "marker": {"color": "#222", "symbol": "line-ns-open", "size": 12},
                     "error_x": {"type": "data", "symmetric": False,
                                 "array": [h - logit(r, "effect") for h, r in zip(highs, chosen, strict=True)],
                                 "arrayminus": [logit(r, "effect") - lo for lo, r in zip(lows, chosen, strict=True)]},
                     "hovertemplate": "%{y}<br>95% interval: preferred %{customdata[0]} to %{customdata[1]}"
                                      "<extra></extra>"})
    return {"data": data, "layout": {
        "barmode": "relative", "height": 130 + 28 * max(len(chosen), 1),
        "margin": {"l": 10, "r": 10, "t": 40, "b": 72 if legend and scope != "shared" else 45},
        # the title at the top left and the legend at the bottom, clear of the toolbar at the top right
        "title": {"text": f"<b>{_p(scope)}</b>" + ("" if reliable else " (not significant: no reliable explanation)"),
                  "font": {"size": 14}, "x": 0, "xref": "container", "xanchor": "left",
                  "y": 1, "yref": "container", "yanchor": "top", "pad": {"t": 8, "l": 10}},
        "xaxis": _probability_axis(extent), "yaxis": {"automargin": True},
        "legend": {"orientation": "h", "x": 1, "xref": "container", "xanchor": "right", "y": 0, "yref": "container",
                   "yanchor": "bottom", "font": {"size": 11}}, "showlegend": legend and scope != "shared",
        "annotations": [] if chosen else [{"text": "no concept has a non-zero weight here", "showarrow": False,
                                           "xref": "paper", "yref": "paper", "x": 0.5, "y": 0.5}]}}


def heatmap_figure(rows: list[dict[str, Any]], concepts: list[str], domains: list[str]) -> dict[str, Any]:
    """Concepts x domains: how often the response showing each concept is preferred in each domain, in %."""
    lookup = {(r["scope"], r["concept"]): r.get("p_preferred") for r in rows}
    shown = [c for c in concepts if any(lookup.get((d, c)) for d in domains)] or concepts
    z = [[round(100 * (lookup.get((d, c)) or 0.5), 1) for d in domains] for c in shown]
    bound = max([abs(v - 50) for line in z for v in line] + [1.0])
    return {"data": [{"type": "heatmap", "x": [_p(d) for d in domains], "y": [_p(c) for c in shown], "z": z,
                      "zmin": 50 - bound, "zmax": 50 + bound, "colorscale": "RdBu", "reversescale": False,
                      "colorbar": {"title": {"text": "% preferred"}, "ticksuffix": "%"},
                      "hovertemplate": "%{y} in %{x}: preferred %{z:.0f}%<extra></extra>"}],
            "layout": {"height": 120 + 24 * len(shown), "margin": {"l": 10, "r": 10, "t": 10, "b": 40},
                       "yaxis": {"automargin": True, "autorange": "reversed"}}}


def matrix_figure(names: list[str], values: list[list[Any]], title: str) -> dict[str, Any]:
    labels = [_p(n) for n in names]
    text = [["–" if v is None else f"{v:.2f}" for v in row] for row in values]
    return {"data": [{"type": "heatmap", "x": labels, "y": labels, "z": values, "zmin": 0, "zmax": 1,
                      "colorscale": "Viridis", "text": text, "texttemplate": "%{text}",
                      "hovertemplate": "%{y} vs %{x}: %{z:.2f}<extra></extra>"}],
            "layout": {"height": 200 + 36 * len(names),
                       "title": {"text": _p(title), "font": {"size": 14}, "y": 0.98, "yref": "container"},
                       "margin": {"l": 10, "r": 10, "t": 80, "b": 10},
                       "xaxis": {"automargin": True, "side": "top"},
                       "yaxis": {"automargin": True, "autorange": "reversed"}}}


def comparison_figure(comparison: dict[str, Any]) -> dict[str, Any]:
    z = comparison["effects"]  # % preferred, 50 where the concept has no weight
    bound = max([abs(v - 50) for line in z for v in line] + [1.0])
    return {"data": [{"type": "heatmap", "x": [_p(c) for c in comparison["concepts"]],
                      "y": [_p(r) for r in comparison["rows"]], "z": z, "zmin": 50 - bound, "zmax": 50 + bound,
                      "colorscale": "RdBu", "colorbar": {"title": {"text": "% preferred"}, "ticksuffix": "%"},
                      "hovertemplate": "%{y}, %{x}: preferred %{z:.0f}%<extra></extra>"}],
            "layout": {"height": 200 + 24 * len(comparison["rows"]),
                       "margin": {"l": 10, "r": 10, "t": 10, "b": 10},
                       "xaxis": {"automargin": True, "tickangle": -40},
                       "yaxis": {"automargin": True, "autorange": "reversed"}}}


def figures(data: dict[str, Any]) -> dict[str, Any]:
    """Every plot of the report, keyed by the id of the element it is drawn in."""
    out: dict[str, Any] = {}
    names = [c["name"] for c in data["concepts"]]
    unreliable = {f["mechanism"] for f in data["fits"] if f.get("reliable") is False}
    marked = set(uncertain_concepts(data))
    for m, mechanism in enumerate(data["mechanisms"]):
        rows = data["effects"][mechanism]
        legend_drawn = False
        for s, scope in enumerate(["shared", *data["domains"]]):
            if any(r["scope"] == scope for r in rows):
                out[f"fig-effects-{m}-{s}"] = effect_figure(rows, scope, data["top"], legend=not legend_drawn,
                                                            reliable=mechanism not in unreliable, marked=marked)
                legend_drawn = legend_drawn or scope != "shared"  # the colours are said once per mechanism
        if not any(key.startswith(f"fig-effects-{m}-") for key in out):  # an all-zero model says so, not nothing
            out[f"fig-effects-{m}-0"] = effect_figure([], "shared", data["top"], reliable=mechanism not in unreliable)
        out[f"fig-heatmap-{m}"] = heatmap_figure(rows, names, data["domains"])
    if len(data["agreement"]["names"]) > 1:
        out["fig-agreement"] = matrix_figure(data["agreement"]["names"], data["agreement"]["values"],
                                             "agreement on pairs (1 = same label; a tie against a side = 0.5)")
    if data["comparison"]:
        out["fig-comparison"] = comparison_figure(data["comparison"])
    return out


# --------------------------------------------------------------------------------------------
# Render
# --------------------------------------------------------------------------------------------


def script_json(value: Any) -> str:
    """JSON that is safe inside a <script> element: no '<', '>' or '&' appear literally."""
    text = json.dumps(value, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
    return (text.replace("&", "\\u0026").replace("<", "\\u003c").replace(">", "\\u003e")
            .replace("\u2028", "\\u2028").replace("\u2029", "\\u2029"))


def _accuracy_rows(evaluation: dict[str, Any] | None) -> tuple[list[str], list[dict[str, Any]]]:
    """The evaluation summary as rows of (mechanism, then "method setting" cells)."""
    if not evaluation:
        return [], []
    from .evaluate import METHODS

    cells: dict[str, dict[str, str]] = {}
    seen: list[str] = []
    for row in evaluation["summary"]:
        column = f"{row['method']} {row['setting']}"
        seen.append(column)
        text = f"{100 * row['mean']:.1f}" if row["mean"] is not None else "–"
        if row.get("std") is not None and row.get("runs", 1) > 1:
            text += f" ± {100 * row['std']:.1f}"
        cells.setdefault(row["mechanism"], {})[column] = text
    methods = list(METHODS) + sorted({c.rsplit(" ", 1)[0] for c in seen} - set(METHODS))
    columns = [f"{m} {s}" for m in methods for s in ("in", "out") if f"{m} {s}" in seen]
    rows = [{"mechanism": m, "cells": [values.get(c, "–") for c in columns]} for m, values in cells.items()]
    return columns, rows


def render_html(data: dict[str, Any]) -> str:
    """The report as one HTML page with every script and style inlined."""
    from jinja2 import Environment, PackageLoader, select_autoescape
    from markupsafe import Markup
    from plotly.offline import get_plotlyjs

    environment = Environment(loader=PackageLoader("preflens", "templates"),
                              autoescape=select_autoescape(default=True, default_for_string=True))
    environment.filters["pct"] = lambda v, d=1: "–" if v is None else f"{100 * v:.{d}f}%"
    environment.filters["num"] = lambda v, d=2: "–" if v is None else f"{v:.{d}f}"
    columns, rows = _accuracy_rows(data["evaluation"])
    plots = figures(data)
    refits = sorted({f.get("bootstrap", 0) for f in data["fits"] if f.get("bootstrap")})
    bootstrap_note = (f"here from {' and '.join(map(str, refits))} bootstrap refits" if refits else
                      "none here: add them with preflens explain RUN --bootstrap 100")
    return environment.get_template("report.html.j2").render(
        d=data, fired_threshold=FIRED_THRESHOLD, accuracy_columns=columns, accuracy_rows=rows,
        scopes=["shared", *data["domains"]], figure_ids=set(plots), bootstrap_note=bootstrap_note,
        uncertain_note=uncertain_sentence(uncertain) if (uncertain := uncertain_concepts(data)) else "",
        has_labels=any(c.get("labels") for c in data["concepts"]),
        shared_p={m: {r["concept"]: r["p_preferred"] for r in data["effects"][m]
                      if r["scope"] == "shared" and r.get("p_preferred") is not None and abs(r["effect"] or 0) > 1e-9}
                  for m in data["mechanisms"]},
        data_json=Markup(script_json({k: data[k] for k in ("pairs", "mechanisms", "domains")})),
        figures_json=Markup(script_json(plots)),
        plotly_js=Markup(get_plotlyjs()),
    )


def _md(text: Any) -> str:
    """A table cell: no pipes, newlines or raw HTML."""
    return html.escape(str(text), quote=False).replace("|", "\\|").replace("\n", " ")


def render_markdown(data: dict[str, Any], html_name: str = "report.html") -> str:
    """A short summary for terminals and pull requests."""
    lines = [f"# {_md(data['title'])}", ""]
    dataset = data["dataset"]
    lines.append(f"{dataset['pairs']} pairs in {len(data['domains'])} domains ({_md(', '.join(data['domains']))}); "
                 f"mechanisms: {_md(', '.join(data['mechanisms']))}; {len(data['concepts'])} concepts"
                 + (f" ({_md(data['concept_source'])})" if data["concept_source"] else "") + ".")
    lines.append("")
    for f in data["fits"]:
        if f.get("evidence"):
            lines += [f"**{_md(f['mechanism'])}: {_md(f['evidence'])}**", ""]
    confounders = data.get("confounders")
    if confounders:
        lines += ["## Confounders first", ""]
        for mechanism, c in confounders["mechanisms"].items():
            lines.append(f"- **{_md(mechanism)}**: {_md(c['sentence'])}")
        lines.append("")
    if data["fits"]:
        header = "| mechanism | pairs | CV accuracy | training accuracy | λ shared | λ domain | non-zero b | non-zero s_d |"
        lines += ["## Fit", "", header, "|---|---|---|---|---|---|---|---|"]
        for f in data["fits"]:
            lines.append(f"| {_md(f['mechanism'])} | {f['pairs']} | {_pct(f['cv_accuracy'])} | "
                         f"{_pct(f['train_accuracy'])} | {f['lambda_shared']:.4g} | {f['lambda_domain']:.4g} | "
                         f"{f['nonzero_shared']} | {f['nonzero_domain']} |")
        lines.append("")
        for f in data["fits"]:
            if f.get("controls"):
                lines += [f"Controls of {_md(f['mechanism'])} (no penalty, shared weights only; the other weights "
                          f"are net of them): {_md(', '.join(f['controls']))}.", ""]
    columns, rows = _accuracy_rows(data["evaluation"])
    if rows:
        lines += ["## Accuracy (percent, mean ± std over splits; out = leave one domain out)", "",
                  "| mechanism | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
        lines += [f"| {_md(r['mechanism'])} | " + " | ".join(r["cells"]) + " |" for r in rows]
        lines.append("")
    unreliable = {f["mechanism"] for f in data["fits"] if f.get("reliable") is False}
    uncertain = uncertain_concepts(data)
    mark = {name: " †" for name in uncertain}
    for mechanism in data["mechanisms"]:
        lines += [f"## Top concepts: {_md(mechanism)}" + (" (not significant: no reliable explanation)"
                                                           if mechanism in unreliable else ""), "",
                  "Preferred = how often the response showing the concept is preferred when the pair differs only in "
                  "it (50% is no effect; shared part + domain part); OR = odds ratio.", ""]
        lines += ["| scope | concepts (preferred, OR) |", "|---|---|"]
        for scope in ["shared", *data["domains"]]:
            top = [r for r in data["effects"][mechanism] if r["scope"] == scope and abs(r["effect"] or 0) > 1e-9][:5]
            if top:
                lines.append(f"| {_md(scope)} | " + ", ".join(
                    f"{_md(r['concept'])}{mark.get(r['concept'], '')} {r['p_preferred']:.0%} (OR {r['odds_ratio']:.2f})"
                    for r in top) + " |")
        lines.append("")
    if uncertain:
        lines += ["† " + _md(uncertain_sentence(uncertain)), ""]
    flagged = [c["name"] for c in data["concepts"] if c.get("mostly_length")]
    if flagged:
        lines += [f"Mostly length (their values correlate with log response length at |r| >= 0.5; fit with "
                  f"--control length to read them net of it): {_md(', '.join(flagged))}.", ""]
    if data.get("rejected_candidates"):
        lines += [f"Discovery rejected {len(data['rejected_candidates'])} candidate(s): "
                  + "; ".join(f"{_md(c['name'])} ({_md(c['why'])})" for c in data["rejected_candidates"][:8])
                  + (" ..." if len(data["rejected_candidates"]) > 8 else "") + ".", ""]
    recovery = data.get("recovery")
    if recovery:
        lines += ["## Recovery of the planted truth", ""] + [f"- {_md(line)}" for line in recovery["summary"]] + [""]
    totals = data["run"]["totals"]
    lines += ["## Run", "", f"{totals['calls']} LLM calls, {totals['cache_hits']} cache hits, "
              f"{totals['prompt_tokens']:,} prompt + {totals['completion_tokens']:,} completion tokens"
              + (f", ${totals['cost_usd']:.4f}" if totals["cost_usd"] else "")
              + f", {totals['seconds']:.0f} s in the stages.", "", f"Full report: {html_name}", ""]
    return "\n".join(lines)


def _pct(value: Any) -> str:
    return "–" if value is None else f"{100 * value:.1f}%"


def write_report(run_dir: str | Path, *, truth: dict[str, Any] | None = None, context: Any = None) -> ReportFiles:
    """Write ``report.html``, ``report.md`` and ``report.json`` (the data both are made from)."""
    from .runs import write_json

    run = Path(run_dir)
    data = collect(run, truth=truth, context=context)
    files = ReportFiles(run / "report.html", run / "report.md", run / "report.json", data)
    files.html.write_text(render_html(data), encoding="utf-8")
    files.markdown.write_text(render_markdown(data, files.html.name), encoding="utf-8")
    write_json(files.data, data)
    return files
