"""Progress bars for the stages (rich), given to the run context as its progress factory."""

from __future__ import annotations

import time
from typing import Any

from ._render import console


class Progress:
    """A progress bar with counts, rate, ETA and a note; call it once per unit of work.

    Called with an LLM response it also counts cache hits and answers that never came. When
    stderr is not a terminal (a log file, CI), it prints a plain line at the start, at every
    tenth of the work or every 30 s, and at the end, instead of a bar that would show only at the end.
    """

    PLAIN_EVERY_SECONDS = 30.0

    def __init__(self, description: str, total: int | None) -> None:
        self.description, self.total = description, total
        self.done = self.hits = self.failed = 0
        self.start = self.last_line = time.perf_counter()
        self.plain = not console.is_terminal
        self.note = ""
        if self.plain:
            return
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

    def __enter__(self) -> Progress:
        if self.plain:
            self._line("started")
        else:
            self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.plain:
            self._line("finished" if exc[0] is None else "stopped")
        else:
            self.progress.stop()

    def _line(self, what: str) -> None:
        seconds = time.perf_counter() - self.start
        of = f"/{self.total}" if self.total is not None else ""
        note = f", {self.note}" if self.note else ""
        console.print(f"{self.description}: {what}, {self.done}{of} done in {seconds:.0f} s{note}", markup=False,
                      highlight=False)
        self.last_line = time.perf_counter()

    def __call__(self, response: Any = None) -> None:
        if response is not None and hasattr(response, "cached"):
            self.hits += int(response.cached)
            self.failed += int(not response.ok)
            self.note = f"{self.hits} cached" + (f", {self.failed} missing" if self.failed else "")
        self.done += 1
        if self.plain:
            step = max(1, (self.total or 0) // 10)
            if (self.total and self.done < self.total and self.done % step == 0) or \
                    time.perf_counter() - self.last_line >= self.PLAIN_EVERY_SECONDS:
                self._line("running")
            return
        rate = self.done / max(time.perf_counter() - self.start, 1e-9)
        self.progress.update(self.task, completed=self.done, rate=f"{rate:.1f}/s", note=self.note)
