"""The pipeline's machinery: stages, the context they read from, and the runner that runs them.

A stage (see :mod:`preflens.stages`) declares what it reads and writes and has a pure ``run``;
:class:`Runner` gives every stage the same hashing, skipping, recording, accounting and locking.
"""

from ._context import JUDGMENT_LABELS, RunContext
from ._run import Run
from ._runner import DEFAULT_MAX_MISSING, IncompleteStageError, Outcome, RunLockedError, Runner
from ._stage import Reads, Stage, StageResult

__all__ = ["DEFAULT_MAX_MISSING", "JUDGMENT_LABELS", "IncompleteStageError", "Outcome", "Reads", "Run", "RunContext",
           "RunLockedError", "Runner", "Stage", "StageResult"]
