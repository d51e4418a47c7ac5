"""Distillation into few-step generators: consistency models (CD, CT, iCT; Song et al. 2023, Song & Dhariwal 2024),
DMD's distribution matching of their one-step map (Yin et al. 2024) and latent consistency models with LCM-LoRA
(Luo et al. 2023: `lcm`, `lcm_lora`). Submodules load on first use, so the
torch-free configs (distill.config) import without torch."""

from __future__ import annotations

from ..lazy import attach

_ATTRS = {  # name -> its module, relative to this package (".solvers.renoise" is fewstep.solvers.renoise)
    "ConsistencyConfig": "config", "DMDConfig": "config", "LCMConfig": "config", "make_config": "config",
    "LCMObjective": "lcm", "distill_lcm": "lcm",
    "ConsistencyObjective": "consistency", "consistency_loss": "consistency", "distance": "distances",
    "make_student": "consistency", "DMDObjective": "dmd", "FakeScore": "dmd", "dm_loss": "dmd",
    "GaussianConsistency": "oracle", "multistep": ".solvers.renoise", "onestep": ".solvers.renoise",
    "search_sigmas": "times", "ternary_search": "times", "teacher_step": "teacher", "ODEPairRegression": "regression",
}

__all__ = sorted(_ATTRS)


__getattr__, __dir__ = attach(__name__, _ATTRS)
