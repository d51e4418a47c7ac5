"""fewstep's engine on a wrapped diffusers UNet == diffusers' own scheduler loops, same grid and noise (float64).

Tolerance 1e-5: diffusers keeps alphas_cumprod in float32 and mixes it into float64 maths; everything else agrees
to ~1e-12. DDIM = first-order data-prediction USF step (Lu et al. 2022b, Sec. 4.1); DPM-Solver++(2M) midpoint form.
"""

from __future__ import annotations

import pytest
import torch
from bridge_models import diffusers, dpmpp_2m_plan, first_order_plan, tiny_cond_unet, tiny_unet

import fewstep as fs
from fewstep.bridge.load import from_diffusers
from fewstep.solvers.stochastic import Given

TOL = {"rtol": 1e-5, "atol": 1e-5}


def _diffusers_loop(sched, unet, x, **kw):
    for t in sched.timesteps:
        x_in = sched.scale_model_input(x, t) if hasattr(type(sched), "scale_model_input") else x
        out = unet(x_in, t, **kw).sample
        x = sched.step(out, t, x).prev_sample
    return x


def _vp_sigmas(sched, timesteps):
    acp = sched.alphas_cumprod.double()[timesteps.long()]
    return torch.cat([((1 - acp) / acp).sqrt(), torch.zeros(1, dtype=torch.float64)])


@pytest.mark.parametrize("pt", ["epsilon", "v_prediction"])
def test_ddim_unconditional(pt):
    unet = tiny_unet().double()
    sched = diffusers.DDIMScheduler(prediction_type=pt, set_alpha_to_one=True, clip_sample=False)
    sched.set_timesteps(5)
    den = from_diffusers(unet, sched)
    sig = _vp_sigmas(sched, sched.timesteps)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    want = _diffusers_loop(sched, unet, n * sched.init_noise_sigma)
    got = fs.sample(den, n * (1 + sig[0] ** 2).sqrt(), first_order_plan(sig))  # x_VE = x_VP / alpha
    torch.testing.assert_close(got, want, **TOL)


def test_ddim_class_conditional():
    unet = tiny_unet(num_class_embeds=3).double()
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    set_alpha_to_one=True, timestep_spacing="trailing", clip_sample=False)
    sched.set_timesteps(4)
    den = from_diffusers(unet, sched)
    sig = _vp_sigmas(sched, sched.timesteps)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    labels = torch.tensor([0, 2])
    want = _diffusers_loop(sched, unet, n, class_labels=labels)
    got = fs.sample(den, n * (1 + sig[0] ** 2).sqrt(), first_order_plan(sig), cond=labels)
    torch.testing.assert_close(got, want, **TOL)


@pytest.mark.parametrize("cond_model", [False, True])
def test_dpm_solver_pp_2m(cond_model):
    unet = (tiny_cond_unet() if cond_model else tiny_unet()).double()
    sched = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type="dpmsolver++",
                                                  final_sigmas_type="zero", lower_order_final=True)
    sched.set_timesteps(6)
    den = from_diffusers(unet, sched)
    sig = _vp_sigmas(sched, sched.timesteps)
    torch.testing.assert_close(sig, sched.sigmas.double(), rtol=1e-6, atol=0)
    c = unet.config.in_channels
    n = torch.randn(2, c, 8, 8, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    kw = {"encoder_hidden_states": torch.randn(2, 5, 8, dtype=torch.float64)} if cond_model else {}
    want = _diffusers_loop(sched, unet, n * sched.init_noise_sigma, **kw)
    got = fs.sample(den, n * (1 + sig[0] ** 2).sqrt(), dpmpp_2m_plan(sig), cond=kw or None)
    torch.testing.assert_close(got, want, **TOL)


def test_flow_match_euler_equals_first_order_plan():
    """Euler in flow time t is DDIM in VE: x' = (t'/t) x + (1 - t'/t) x0 (rectified flow, x = (1-t) x0 + t n)."""
    unet = tiny_unet().double()
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0)
    sched.set_timesteps(sigmas=[0.95, 0.7, 0.4, 0.1])
    den = from_diffusers(unet, sched)
    t_flow = sched.sigmas.double()
    sig = t_flow / (1 - t_flow)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    want = _diffusers_loop(sched, unet, n)
    got = fs.sample(den, n / (1 - t_flow[0]), first_order_plan(sig))  # x_VE = x_flow / (1 - t)
    torch.testing.assert_close(got, want, **TOL)


def test_sde_dpm_solver_pp_2m_on_a_unet():
    """algorithm_type="sde-dpmsolver++" on an eps UNet == fewstep's dpm_solver_pp_2m_sde, same variance_noise."""
    unet = tiny_unet().double()
    sched = diffusers.DPMSolverMultistepScheduler(solver_order=2, algorithm_type="sde-dpmsolver++",
                                                  final_sigmas_type="zero", lower_order_final=True)
    sched.set_timesteps(6)
    den = from_diffusers(unet, sched)
    sig = _vp_sigmas(sched, sched.timesteps)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(5), dtype=torch.float64)
    z = [torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(50 + k)) for k in range(6)]  # float32
    x = n * sched.init_noise_sigma
    for k, t in enumerate(sched.timesteps):
        x = sched.step(unet(x, t).sample, t, x, variance_noise=z[k]).prev_sample
    plan = fs.plans.get("dpm_solver_pp_2m_sde", nfe=6, sigmas=sig)
    got = fs.sample(den, n * (1 + sig[0] ** 2).sqrt(), plan, generator=Given([v.double() for v in z]))
    torch.testing.assert_close(got, x, **TOL)
