"""`grids.vp_discrete` equals diffusers' own timestep spacing; `VPDiscrete.spanning` hits both ends exactly."""

from __future__ import annotations

import math

import pytest
import torch

from fewstep import grids
from fewstep.noise import VPDiscrete

diffusers = pytest.importorskip("diffusers")


@pytest.mark.parametrize("lo, hi", [(0.002, 80.0), (0.03, 160.0), (0.01, 1.0)])
def test_spanning_chain_ends_exactly(lo, hi):
    p = VPDiscrete.spanning(lo, hi)
    assert p.sigmas[0].item() == pytest.approx(lo, rel=1e-10) and p.sigmas[-1].item() == pytest.approx(hi, rel=1e-10)
    b = p.betas
    torch.testing.assert_close(b.diff(), b.diff()[:1].expand(len(b) - 1), rtol=0, atol=1e-12)  # linear betas
    torch.testing.assert_close(torch.cumprod(1 - b, 0), p.alphas_cumprod, rtol=1e-12, atol=0)


@pytest.mark.parametrize("spacing", ["linspace", "trailing"])
@pytest.mark.parametrize("n", [1, 2, 3, 4, 5, 6, 7, 8, 10, 12, 25])
def test_vp_discrete_equals_diffusers_spacing(spacing, n):
    """diffusers computes the grid itself (float64 alphas_cumprod, integer timesteps) from the same betas."""
    p = VPDiscrete.spanning(0.002, 80.0)
    sched = diffusers.DPMSolverMultistepScheduler(trained_betas=p.betas.tolist(), timestep_spacing=spacing)
    sched.alphas_cumprod = p.alphas_cumprod.clone()
    sched.set_timesteps(n)
    acp = p.alphas_cumprod
    theirs = [math.sqrt((1 - acp[t]) / acp[t]) for t in sched.timesteps.tolist()] + [0.0]
    ours = grids.get("vp_discrete", n, 0.002, 80.0, spacing=spacing)
    torch.testing.assert_close(ours, torch.tensor(theirs, dtype=torch.float64), rtol=1e-9, atol=0)


def test_vp_discrete_on_another_chain_and_bad_spacing():
    ddpm = VPDiscrete.from_betas()  # the DDPM table: sigma in [~0.01, ~157]
    s = grids.vp_discrete(4, float(ddpm.sigmas[0]), float(ddpm.sigmas[-1]), process=ddpm)
    t = [999, 749, 500, 250]  # linspace(0, 999, 5) rounded half to even, reversed
    torch.testing.assert_close(s[1:-1], ddpm.sigmas[t[1:]], rtol=1e-12, atol=0)
    with pytest.raises(ValueError, match="spacing"):
        grids.vp_discrete(4, 0.002, 80.0, spacing="leading")
