"""Progress displays, always on stderr, so stdout keeps only results and --json: one rich bar per long loop."""

from __future__ import annotations

from typing import Any


def stderr_console() -> Any:
    """The rich console every fewstep display and log line writes to (stderr)."""
    from rich.console import Console

    return Console(stderr=True)


class Bar:
    """A context manager around one rich progress bar on stderr: advance(k), update(**fields); a no-op when
    disabled (--quiet, non-zero ranks) or when stderr is not a terminal (logs, pipes, tests). `fields` name extra
    {task.fields[...]} shown after the bar."""

    def __init__(self, total: int, label: str, enabled: bool = True, start: int = 0, **fields: Any) -> None:
        self.total, self.label, self.enabled, self.start, self.fields = total, label, enabled, start, fields
        self._bar: Any = None

    def __enter__(self) -> Bar:
        console = stderr_console() if self.enabled else None
        if console is not None and console.is_terminal:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            cols = [TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn()]
            cols += [TextColumn(f"{k} {{task.fields[{k}]}}") for k in self.fields]
            self._bar = Progress(*cols, console=console, transient=False)
            self._bar.__enter__()
            self._task = self._bar.add_task(self.label, total=self.total, completed=self.start, **self.fields)
        return self

    def advance(self, k: int = 1) -> None:
        if self._bar is not None:
            self._bar.advance(self._task, k)

    def update(self, **fields: Any) -> None:
        if self._bar is not None:
            self._bar.update(self._task, **fields)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(*exc)
