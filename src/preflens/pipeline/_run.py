"""``Run``: the pipeline from Python, through the same stages, runner and run folder as the command line."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ._context import RunContext
from ._runner import DEFAULT_MAX_MISSING, Outcome, Runner

if TYPE_CHECKING:
    from ..concepts import ConceptSet
    from ..data import PairDataset
    from ..evaluate import EvaluationResult
    from ..explain import GlobalExplanation
    from ..llm import LLMClient
    from ..model import HMDR
    from ..report import ReportFiles


class Run:
    """A run folder driven from Python; each method is one stage, skipped when it is up to date.

    ::

        from preflens import Run

        with Run("runs/mine", llm="openai/gpt-4o-mini") as run:
            run.ingest("pairs.jsonl", label_cols=["human=label"])
            run.discover()                      # or run.use_concepts("concepts.yaml")
            run.represent(scheme="comp")
            models = run.fit()                  # {mechanism: HMDR}
            effects = run.explain("human", bootstrap=100)
            run.report()

    ``llm`` is a provider spec (``local`` for the embedded model, ``openai/MODEL`` for any
    OpenAI-compatible server at ``base_url``); ``client`` an :class:`~preflens.llm.LLMClient` you
    built yourself instead. The folder is locked while the ``with`` block runs. ``outcomes`` lists
    what each stage did (``done``, ``up to date`` or ``incomplete``). The LLM client, yours or the one
    made from ``llm``, is closed when the block ends.

    ``engine="ray"`` runs the per-pair stages (measure, represent, an LLM judge) as ``map_batches`` on Ray Data
    with ``workers`` LLM actors (see :mod:`preflens.engine`); each worker builds its own client from
    ``llm``, ``base_url`` and ``cache``, so a ``client`` object cannot be used with it.
    """

    def __init__(self, folder: str | Path, *, llm: str | None = None, base_url: str | None = None,
                 client: LLMClient | None = None, cache: str | Path | None = None, force: bool | set[str] = False,
                 max_missing: float = DEFAULT_MAX_MISSING, engine: str = "local", workers: int = 2) -> None:
        from ..engine import ClientSpec, RayEngine
        from ..errors import ConfigError

        self.folder = Path(folder)
        self.llm, self.base_url, self.cache = llm, base_url, cache
        self._client = client
        if engine not in ("local", "ray"):
            raise ConfigError(f"engine must be 'local' or 'ray', not {engine!r}")
        if engine == "ray" and client is not None:
            raise ConfigError("engine='ray' builds a client in every worker from llm=, base_url= and cache=; "
                              "pass those instead of client=")
        self._spec = ClientSpec(llm=llm, base_url=base_url, cache=str(cache) if cache else None)
        self.engine = RayEngine(self._spec, workers=workers) if engine == "ray" else None
        self.context = RunContext(self.folder, client_factory=self._make_client)
        self.runner = Runner(self.context, force=force, max_missing=max_missing)

    def _make_client(self) -> LLMClient:
        if self._client is None:
            self._client = self._spec.build()  # the recipe the Ray workers build theirs from
        return self._client

    @property
    def llm_spec(self) -> str:
        return self._make_client().provider.spec

    def __enter__(self) -> Run:
        self.runner.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.runner.__exit__(*exc)

    @property
    def outcomes(self) -> list[Outcome]:
        return self.runner.outcomes

    def _run(self, stage: Any) -> Outcome:
        if not self.runner.is_open:
            raise RuntimeError("use the run in a 'with Run(...) as run:' block (it locks the folder)")
        return self.runner.run(stage)

    @property
    def pairs(self) -> PairDataset:
        return self.context.pairs

    def ingest(self, data: str | Path, **load_options: Any) -> PairDataset:
        """Read ``data`` (see :func:`preflens.load_pairs` for the options) into ``pairs.parquet``."""
        from ..stages import ingest_stage

        self._run(ingest_stage(str(data), load_options))
        return self.context.pairs

    def use_concepts(self, path: str | Path) -> ConceptSet:
        """Use a concept list (YAML or JSON) instead of discovering one."""
        from ..stages import given_concepts_stage

        self._run(given_concepts_stage(path))
        return self.context.llm_concepts

    def measure(self, concepts: str | list[str] = "all") -> pd.DataFrame:
        """The measured concepts (length, lists, refusals, ...; see :mod:`preflens.measured`), no LLM."""
        from ..stages import measured_stage

        self._run(measured_stage(concepts if isinstance(concepts, list) else [concepts], engine=self.engine))
        return pd.read_parquet(self.folder / "measured.parquet")

    def discover(self, method: str = "propose", **settings: Any) -> ConceptSet:
        """Discover the concepts: ``method="propose"`` (the paper's; :class:`~preflens.discover.DiscoverySettings`
        fields as keywords) or ``"evidence"`` (:class:`~preflens.discover_evidence.EvidenceDiscoverySettings`)."""
        from ..discover import DiscoverySettings
        from ..discover_evidence import EvidenceDiscoverySettings
        from ..stages import discover_stage

        if method not in ("propose", "evidence"):
            raise ValueError(f"method must be 'propose' or 'evidence', not {method!r}")
        chosen = EvidenceDiscoverySettings(**settings) if method == "evidence" else DiscoverySettings(**settings)
        self._run(discover_stage(chosen, self.llm_spec))
        return self.context.llm_concepts

    def represent(self, **settings: Any) -> pd.DataFrame:
        """Represent every pair on every concept (:class:`~preflens.represent.RepresentSettings` fields)."""
        from ..represent import RepresentSettings
        from ..stages import represent_stage

        self._run(represent_stage(RepresentSettings(**settings), self.llm_spec, engine=self.engine))
        return self.context.features

    def judge(self, name: str, *, reward_model: str | None = None, **settings: Any) -> pd.Series:
        """Add mechanism ``name``: an LLM judge (:class:`~preflens.judge.JudgeSettings` fields) or a reward model."""
        from ..judge import JudgeSettings
        from ..stages import judge_stage

        if reward_model:
            stage = judge_stage(name, reward_model=reward_model, **settings)
        else:
            stage = judge_stage(name, settings=JudgeSettings(**settings), llm=self.llm_spec, engine=self.engine)
        self._run(stage)
        return self.context.pairs.labels(name)

    def fit(self, mechanisms: list[str] | None = None, **settings: Any) -> dict[str, HMDR]:
        """Fit one HMDR per mechanism (default: all; :class:`~preflens.fit.FitSettings` fields)."""
        from ..fit import FitSettings
        from ..stages import fit_stage

        names = mechanisms or self.context.pairs.mechanisms
        for name in names:
            self._run(fit_stage(name, FitSettings(**settings)))
        return {name: self.context.model(name) for name in names}

    def explain(self, mechanism: str, *, bootstrap: int = 0, seed: int = 0) -> GlobalExplanation:
        """The global explanation of a fitted mechanism, with ``bootstrap`` refits for intervals."""
        from ..explain import GlobalExplanation
        from ..stages import explain_stage

        self._run(explain_stage(mechanism, bootstrap=bootstrap, seed=seed))
        return GlobalExplanation.from_json(self.folder / "explanations" / f"{mechanism}.json")

    def evaluate(self, mechanisms: list[str] | None = None, **settings: Any) -> EvaluationResult | None:
        """HMDR against its ablations and baselines (see :func:`preflens.stages.evaluate_stage`).

        Returns the result when the stage ran, None when it was up to date (see ``evaluation.json``).
        """
        from ..stages import evaluate_stage

        outcome = self._run(evaluate_stage(mechanisms or self.context.pairs.mechanisms, **settings))
        return outcome.result.value if outcome.result else None

    def report(self, truth: str | Path | None = None) -> ReportFiles:
        """Write report.html, report.md and report.json (with the recovery section given a demo ``truth``)."""
        from ..stages import recovery_stage, report_stage

        truth_file = Path(truth) if truth else self.folder / "truth.json"
        if truth_file.exists():
            self._run(recovery_stage(truth_file, self.context.fitted_mechanisms()))
        outcome = self._run(report_stage(truth_file if truth_file.exists() else None))
        assert outcome.result is not None
        return outcome.result.value
