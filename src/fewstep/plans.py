"""`fs.plans`: named solver plans (USF plan constructors) and the Plan/Step types."""

from .solvers.constructors import REGISTRY, get, names
from .solvers.plan import Plan, Step

__all__ = ["REGISTRY", "Plan", "Step", "get", "names"]
