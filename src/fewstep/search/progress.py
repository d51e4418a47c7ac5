"""Live search display (rich, on stderr): best score so far, evaluations spent of the budget, the predictor's
Kendall tau."""

from __future__ import annotations

import math
from typing import Any

from ..progress import stderr_console


class Display:
    """Callable per search stage; `close()` ends the live view."""

    def __init__(self, budget: int, nfe: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(TextColumn(f"S^3 nfe={nfe}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                            TextColumn("{task.fields[info]}"), transient=False, console=stderr_console())
        self.task = self.bar.add_task("search", total=budget, info="")
        self.bar.start()

    def __call__(self, state: dict[str, Any]) -> None:
        st = state["stages"][-1]
        taus = [s["tau"] for s in state["stages"] if not math.isnan(s["tau"])]
        tau = f"tau {sum(taus[-5:]) / len(taus[-5:]):+.2f}" if taus else "tau n/a"
        self.bar.update(self.task, completed=st["evaluations"],
                        info=f"best {st['best']:.4g}  stage {st['stage']}  {tau}")

    def close(self) -> None:
        self.bar.stop()
