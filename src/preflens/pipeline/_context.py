"""RunContext: one run folder's artifacts, each loaded once per process and handed to the stages."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable, Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..errors import ConfigError
from ..runs import RunFolder

if TYPE_CHECKING:
    from ..concepts import ConceptSet
    from ..data import PairDataset
    from ..fit import ModelInputs
    from ..llm import LLMClient, LLMResponse
    from ..model import HMDR
    from ._stage import Reads

logger = logging.getLogger("preflens")

ProgressFactory = Callable[[str, "int | None"], AbstractContextManager[Callable[..., None]]]
"""``progress(description, total)``: a context manager giving a callback called once per unit of work
(with the :class:`LLMResponse` for LLM work)."""

JUDGMENT_LABELS = "judgments/{name}.labels.parquet"
HASH_ROWS = 100_000
"""Rows hashed at a time (see :meth:`RunContext.hash`)."""
"""Where ``judge`` keeps a mechanism's labels (``id``, ``label``); :attr:`RunContext.pairs` merges them."""

_MISSING = object()


def _null_progress(_description: str, _total: int | None) -> AbstractContextManager[Callable[..., None]]:
    return nullcontext(lambda *_args: None)


class RunContext:
    """The run folder as the stages see it.

    Loads each artifact at most once (``pairs_loads`` counts reads of ``pairs.parquet``), merges the
    label columns ``judge`` wrote into :attr:`pairs`, hashes what a stage declares it reads, and owns
    the one LLM client of the process (made on first use by ``client_factory``).

    ``overrides`` maps an artifact name (``features.parquet``, ``concepts.json``) to a file outside
    the folder that stands in for it.
    """

    def __init__(self, folder: RunFolder | str | Path, *, client_factory: Callable[[], LLMClient] | None = None,
                 progress: ProgressFactory | None = None, echo: Callable[[str], None] | None = None,
                 overrides: Mapping[str, str | Path | None] | None = None) -> None:
        self.folder = folder if isinstance(folder, RunFolder) else RunFolder(folder)
        self.client_factory = client_factory
        self.progress_factory = progress or _null_progress
        self.echo = echo or logger.info
        self.overrides = {k: Path(v) for k, v in (overrides or {}).items() if v}
        self.pairs_loads = 0
        self.first_error: str | None = None
        self.inputs_hash: str | None = None  # the running stage's (set by the runner)
        self._client: LLMClient | None = None
        self._loaded: dict[str, Any] = {}
        self._file_hashes: dict[Path, str] = {}

    # ---------------------------------------------------------------- artifacts

    def path(self, name: str) -> Path:
        """Where an artifact is read from: the folder, or the file given in its place."""
        return self.overrides.get(name) or self.folder.file(name)

    def exists(self, name: str) -> bool:
        return self.path(name).exists()

    def _once(self, key: str, load: Callable[[], Any]) -> Any:
        value = self._loaded.get(key, _MISSING)
        if value is _MISSING:
            value = self._loaded[key] = load()
        return value

    def invalidate(self, names: tuple[str, ...] | list[str]) -> None:
        """Forget what was loaded from these artifacts (a stage just rewrote them)."""
        written = set(names)
        for name in written:
            self._loaded.pop(name, None)
            self._file_hashes.pop(self.path(name), None)
        if "pairs.parquet" in written or any(name.startswith("judgments/") for name in written):
            self._loaded.pop("pairs", None)
            self._loaded.pop("inputs", None)
        if written & {"features.parquet", "concepts.json", "measured.parquet", "measured.json"}:
            for key in ("llm_concepts", "concepts", "features", "inputs"):
                self._loaded.pop(key, None)

    def require(self, name: str, fix: str) -> Path:
        path = self.path(name)
        if not path.exists():
            raise ConfigError(f"{self.folder.path}: no {name}; {fix}")
        return path

    @property
    def pairs(self) -> PairDataset:
        """The canonical pairs with every mechanism's labels (the source's and those ``judge`` added)."""
        return self._once("pairs", self._load_pairs)

    def _load_pairs(self) -> PairDataset:
        from ..data import LABEL_PREFIX, PairDataset
        from ..features import read_parquet

        path = self.require("pairs.parquet", f"run 'preflens validate DATA --out {self.folder.path}' first")
        self.pairs_loads += 1
        pairs = PairDataset.read_parquet(path)
        judged = self.folder.path / "judgments"
        if judged.is_dir():
            frame = pairs.frame
            for labels_file in sorted(judged.glob("*.labels.parquet")):
                name = labels_file.name[: -len(".labels.parquet")]
                labels = read_parquet(labels_file, "labels file").set_index("id")["label"]
                column = frame["id"].map(labels).astype(object)
                frame[LABEL_PREFIX + name] = column.where(column.notna(), None)
        return pairs

    @property
    def llm_concepts(self) -> ConceptSet:
        """The concepts an LLM represents: ``concepts.json`` (discovered, or a given list)."""
        from ..concepts import ConceptSet

        path = self.require("concepts.json", f"run 'preflens discover {self.folder.path}' or pass --concepts FILE")
        return self._once("llm_concepts", lambda: ConceptSet.load(path))

    @property
    def concepts(self) -> ConceptSet:
        """Every concept a model uses: the LLM's, then the measured ones (a name the LLM's list has wins)."""
        return self._once("concepts", self._load_concepts)

    def _load_concepts(self) -> ConceptSet:
        from ..concepts import ConceptSet

        if not self.exists("measured.json"):
            return self.llm_concepts
        measured = ConceptSet.load(self.path("measured.json"), allow_empty=True)
        if not self.exists("concepts.json"):
            return measured
        llm = self.llm_concepts
        taken = set(llm.names)
        return ConceptSet(llm.concepts + [c for c in measured.concepts if c.name not in taken], dict(llm.meta))

    @property
    def features(self) -> pd.DataFrame:
        """The LLM's features (``features.parquet``) and the measured ones (``measured.parquet``), by pair id."""
        return self._once("features", self._load_features)

    def _load_features(self) -> pd.DataFrame:
        from ..features import load_features

        if not self.exists("measured.parquet"):
            return load_features(self.require("features.parquet", f"run 'preflens represent {self.folder.path}' first"))
        measured = load_features(self.path("measured.parquet"))
        if not self.exists("features.parquet"):
            return measured
        llm = load_features(self.path("features.parquet"))
        extra = ["id", *(c for c in measured.columns if c != "id" and c not in llm.columns)]
        return llm.merge(measured[extra], on="id", how="outer")

    @property
    def inputs(self) -> ModelInputs:
        """Features lined up with the pairs, the shared mask and the membership (see ``fit.model_inputs``)."""
        from ..fit import model_inputs

        return self._once("inputs", lambda: model_inputs(self.pairs, self.features, self.concepts))

    def model(self, mechanism: str) -> HMDR:
        from ..model import HMDR

        name = f"models/{mechanism}.json"
        path = self.require(name, f"run 'preflens fit {self.folder.path}' first")
        return self._once(name, lambda: HMDR.from_json(path))

    def json(self, name: str) -> Any:
        """A JSON artifact, or None when it is not there."""
        path = self.path(name)
        def load() -> Any:
            if not path.exists():
                return None
            try:
                return json.loads(path.read_bytes())
            except ValueError:
                raise ConfigError(f"{path}: damaged (not valid JSON); delete it and rerun the stage that writes it, "
                                  "or use --force") from None

        return self._once(name, load)

    def fitted_mechanisms(self) -> list[str]:
        """Mechanisms with a fitted model, in the order of their label columns."""
        return [m for m in self.pairs.mechanisms if self.folder.file(f"models/{m}.json").exists()]

    # ---------------------------------------------------------------- hashing

    def _file_hash(self, path: Path) -> str:
        if path not in self._file_hashes:
            digest = hashlib.sha256()
            if path.exists():
                with path.open("rb") as handle:
                    while chunk := handle.read(1 << 20):
                        digest.update(chunk)
            else:
                digest.update(b"<absent>")
            self._file_hashes[path] = digest.hexdigest()
        return self._file_hashes[path]

    def hash(self, reads: Reads) -> str:
        """The hash of exactly what a stage reads: some pair columns, some files, its settings."""
        digest = hashlib.sha256()
        if reads.columns:
            frame = self.pairs.frame
            for column in reads.columns:
                digest.update(column.encode() + b"\x00")
                if column in frame.columns:
                    # in slices: hashing a text column encodes every value at once, a copy of the whole column;
                    # the row hashes are independent, so the digest is the same as in one piece
                    for start in range(0, len(frame), HASH_ROWS):
                        part = frame[column].iloc[start:start + HASH_ROWS]
                        values = part.astype(object).where(part.notna(), None)
                        digest.update(pd.util.hash_pandas_object(values.astype(str).where(values.notna(), "\x00<na>"),
                                                                 index=False).to_numpy().tobytes())
                else:
                    digest.update(b"<absent>")
        for name in reads.files:
            digest.update(name.encode() + b"\x00" + self._file_hash(self.path(name)).encode())
        for path in reads.external:
            digest.update(str(path).encode() + b"\x00" + self._file_hash(Path(path)).encode())
        digest.update(json.dumps(dict(reads.settings), sort_keys=True, default=str).encode())
        return "sha256:" + digest.hexdigest()

    # ---------------------------------------------------------------- LLM and progress

    def client(self) -> LLMClient:
        """The process's LLM client (one cache, one connection pool, per-stage accounting)."""
        if self._client is None:
            if self.client_factory is None:
                raise ConfigError("this stage calls an LLM but no LLM was configured")
            self._client = self.client_factory()
        return self._client

    @property
    def has_client(self) -> bool:
        return self._client is not None

    @contextmanager
    def llm_progress(self, description: str, total: int | None) -> Iterator[Callable[[LLMResponse], None]]:
        """Progress over LLM answers that also keeps the first error, for the stage's one-line failure."""
        with self.progress_factory(description, total) as advance:
            def on_response(response: LLMResponse) -> None:
                if not response.ok and self.first_error is None:
                    self.first_error = response.error
                advance(response)

            yield on_response

    def progress(self, description: str, total: int | None) -> AbstractContextManager[Callable[..., None]]:
        return self.progress_factory(description, total)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()
            self._client = None
