"""Progress bars for the stages (rich), given to the run context as its progress factory."""

from __future__ import annotations

import time
from typing import Any

from ._render import console


class Progress:
    """A progress bar with counts, rate, ETA and a note; call it once per unit of work.

    Called with an LLM response it also counts cache hits and answers that never came.
    """

    def __init__(self, description: str, total: int | None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )
        from rich.progress import Progress as RichProgress

        self.progress = RichProgress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"),
                                     TimeRemainingColumn(), TextColumn("{task.fields[note]}"), console=console,
                                     transient=False)
        self.task = self.progress.add_task(description, total=total, rate="", note="")
        self.done = self.hits = self.failed = 0
        self.start = time.perf_counter()

    def __enter__(self) -> Progress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def __call__(self, response: Any = None) -> None:
        note = ""
        if response is not None and hasattr(response, "cached"):
            self.hits += int(response.cached)
            self.failed += int(not response.ok)
            note = f"{self.hits} cached" + (f", {self.failed} missing" if self.failed else "")
        self.done += 1
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=self.done, rate=f"{rate:.1f}/s", note=note)
