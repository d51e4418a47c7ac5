"""Unified sampling framework (USF, Liu et al. 2024): plans as data, one engine, classic solvers as plans."""

from .constructors import get, names
from .engine import invert, run, sample
from .plan import Plan, Step

__all__ = ["Plan", "Step", "get", "invert", "names", "run", "sample"]
