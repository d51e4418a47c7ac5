"""Distillation into few-step generators: consistency models (CD, CT, iCT; Song et al. 2023, Song & Dhariwal 2024)
and DMD's distribution matching of their one-step map (Yin et al. 2024)."""

from __future__ import annotations

from ..solvers.renoise import multistep, onestep
from .consistency import ConsistencyConfig, ConsistencyObjective, consistency_loss, distance, make_student
from .dmd import FakeScore, dm_loss
from .oracle import GaussianConsistency
from .sampling import search_sigmas, ternary_search
from .teacher import teacher_step

__all__ = ["ConsistencyConfig", "ConsistencyObjective", "FakeScore", "GaussianConsistency", "consistency_loss",
           "distance", "dm_loss", "make_student", "multistep", "onestep", "search_sigmas", "teacher_step",
           "ternary_search"]
