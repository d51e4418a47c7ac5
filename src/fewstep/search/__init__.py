"""S^3 (Liu et al. 2024): predictor-guided evolutionary search of USF solver plans under an NFE budget.

`fs.search.search(den, nfe, shape, ...) -> Plan`; the pieces: space (candidates), score (RMS / FD on fixed
noise), predictor (ranking model), evolve (multi-stage loop, resumable state).
"""

from .api import read_plan_file, search, write_plan_file

__all__ = ["search", "read_plan_file", "write_plan_file"]
