"""`fs.plans`: named solver plans (USF plan constructors) and the Plan/Step types.

Inversion (x0 -> x_T, DDIM inversion and its higher-order versions): `fs.plans.get(name, nfe, ...).inverted()` is
the ascending plan; `fs.invert(den, x0, plan)` runs it (a sampling plan is inverted for you).
"""

from .solvers.constructors import REGISTRY, STOCHASTIC, get, names
from .solvers.plan import Plan, Step
from .solvers.stochastic import with_churn

__all__ = ["REGISTRY", "STOCHASTIC", "Plan", "Step", "get", "names", "with_churn"]
