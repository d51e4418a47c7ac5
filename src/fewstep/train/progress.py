"""A rich progress bar on stderr showing step, loss and it/s; a no-op when disabled (--quiet, non-zero ranks) or
when stderr is not a terminal (logs, pipes, tests), as fewstep.progress.Bar."""

from __future__ import annotations

import time
from typing import Any

from ..progress import stderr_console


class ProgressBar:
    """Context manager; update(step, loss) refreshes the bar and the measured iterations per second."""

    def __init__(self, total: int, start: int = 0, enabled: bool = True) -> None:
        self.total, self.start, self.enabled = total, start, enabled
        self._bar: Any = None

    def __enter__(self) -> ProgressBar:
        console = stderr_console() if self.enabled else None
        if console is not None and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self._bar = Progress(TextColumn("train"), BarColumn(), MofNCompleteColumn(),
                                 TextColumn("loss {task.fields[loss]:.4f}"), TextColumn("{task.fields[its]:.1f} it/s"),
                                 TimeRemainingColumn(), console=console)
            self._bar.__enter__()
            self._task = self._bar.add_task("train", total=self.total, completed=self.start, loss=float("nan"),
                                            its=0.0)
            self._t0, self._s0 = time.perf_counter(), self.start
        return self

    def update(self, step: int, loss: float) -> None:
        if self._bar is not None:
            its = (step - self._s0) / max(time.perf_counter() - self._t0, 1e-9)
            self._bar.update(self._task, completed=step, loss=loss, its=its)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
