"""FewStepScheduler inside diffusers pipelines: same images as fs.sample (<= 1e-4), exactly plan.nfe UNet calls."""

from __future__ import annotations

import json

import pytest
import torch
from bridge_models import diffusers, dpmpp_2m_plan, first_order_plan, tiny_cond_unet, tiny_unet

import fewstep as fs
from fewstep.bridge.load import from_diffusers
from fewstep.bridge.scheduler import FewStepScheduler
from fewstep.guidance import cfg
from fewstep.solvers.plan import Plan, Step


def _count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def _sigmas(den, n: int) -> torch.Tensor:
    """A log-uniform grid inside the model's range, ending in 0 (independent of fewstep.grids)."""
    s = torch.logspace(torch.tensor(den.sigma_max).log10().item() - 0.5, torch.tensor(den.sigma_min).log10().item(),
                       n, dtype=torch.float64)
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


@pytest.mark.parametrize("make_plan", [first_order_plan, dpmpp_2m_plan])
def test_ddpm_pipeline_equals_fs_sample(make_plan):
    unet = tiny_unet()
    train = diffusers.DDPMScheduler(prediction_type="v_prediction")
    den = from_diffusers(unet, train)
    plan = make_plan(_sigmas(den, 5))
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=FewStepScheduler.from_plan(plan, train))
    pipe.set_progress_bar_config(disable=True)
    calls = _count_calls(unet)
    img = pipe(batch_size=2, num_inference_steps=plan.nfe, generator=torch.Generator().manual_seed(0),
               output_type="pt").images  # a hand-made plan runs only at its own NFE
    assert calls[0] == plan.nfe
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    # DDPMPipeline ignores init_noise_sigma: its latent n is x_VP, i.e. x_VE = n / alpha(sigma_max)
    x0 = fs.sample(den, n * (1 + plan.sigmas[0] ** 2).sqrt().float(), plan)
    torch.testing.assert_close(img, (x0 / 2 + 0.5).clamp(0, 1), rtol=0, atol=1e-4)


def test_manual_loop_unclamped_and_reuse():
    """The SD-style loop (init_noise_sigma, scale_model_input) starts at n * sigma_max; a second run is identical."""
    unet = tiny_unet()
    den = from_diffusers(unet, diffusers.DDPMScheduler())
    plan = dpmpp_2m_plan(_sigmas(den, 6))
    sch = FewStepScheduler.from_plan(plan, den)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(4))
    want = fs.sample(den, n * plan.sigmas[0].float(), plan)
    for _ in range(2):
        sch.set_timesteps(plan.nfe)  # a hand-made plan: another NFE is an error (test_replan.py)
        assert len(sch.timesteps) == plan.nfe
        x = n * sch.init_noise_sigma
        for t in sch.timesteps:
            x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
        torch.testing.assert_close(x, want, rtol=0, atol=1e-4)
    with pytest.raises(RuntimeError, match="set_timesteps"):
        sch.step(torch.zeros_like(x), sch.timesteps[0], x)


def test_stable_diffusion_pipeline_with_cfg():
    pytest.importorskip("transformers")
    unet = tiny_cond_unet()
    train = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    den = from_diffusers(unet, train)
    plan = dpmpp_2m_plan(_sigmas(den, 4))
    pipe = diffusers.StableDiffusionPipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=FewStepScheduler.from_plan(plan, train),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    emb, neg = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    calls = _count_calls(unet)
    lat = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, guidance_scale=3.0, height=64, width=64,
               num_inference_steps=plan.nfe,
               generator=torch.Generator().manual_seed(0), output_type="latent").images
    assert calls[0] == plan.nfe  # CFG batches cond + uncond in one UNet call
    n = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    want = fs.sample(cfg(den, 3.0, uncond=neg), n * plan.sigmas[0].float(), plan, cond=emb)
    torch.testing.assert_close(lat, want, rtol=0, atol=1e-4)


def test_config_round_trip(tmp_path):
    train = diffusers.DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type="sample")
    den = from_diffusers(tiny_unet(), train)
    plan = dpmpp_2m_plan(_sigmas(den, 5))
    sch = FewStepScheduler.from_plan(plan, train, round_timesteps=True)
    sch.save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "scheduler_config.json").read_text())
    assert saved["_class_name"] == "FewStepScheduler" and Plan.from_dict(saved["plan"]) == plan
    back = FewStepScheduler.from_pretrained(tmp_path)
    assert back.plan == plan and back.schedule.prediction_type == "sample" and back.schedule.round_timesteps
    torch.testing.assert_close(back.timesteps, sch.timesteps, rtol=0, atol=0)
    assert torch.equal(back.timesteps, back.timesteps.round())
    torch.testing.assert_close(back.schedule.process.alphas_cumprod, den.schedule.process.alphas_cumprod)
    # a whole pipeline saved with the scheduler loads it back through fewstep's lazy attribute
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=sch).save_pretrained(tmp_path / "pipe")
    pipe = diffusers.DDPMPipeline.from_pretrained(tmp_path / "pipe")
    assert isinstance(pipe.scheduler, FewStepScheduler) and pipe.scheduler.plan == plan
    assert fs.FewStepScheduler is FewStepScheduler


@pytest.mark.parametrize("afs", ["zero", "mean"])
def test_afs_plans(afs):
    """afs=zero: the first latent is x_1 (exactly nfe calls); afs=mean: one extra, discarded call at sigma_max."""
    unet = tiny_unet()
    den = from_diffusers(unet, diffusers.DDPMScheduler())
    s = _sigmas(den, 4)
    mean = torch.full((3, 8, 8), 0.3, dtype=torch.float64) if afs == "mean" else None
    plan = Plan(s, (Step(),) + tuple(Step(order=2) for _ in range(len(s) - 3)) + (Step(),), afs=afs, afs_mean=mean)
    sch = FewStepScheduler.from_plan(plan, den)
    assert len(sch.timesteps) == plan.nfe + (afs == "mean")
    n = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    x = n * sch.init_noise_sigma
    calls = _count_calls(unet)
    sch.set_timesteps()
    for t in sch.timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
    assert calls[0] == len(sch.timesteps)
    torch.testing.assert_close(x, fs.sample(den, n * plan.sigmas[0].float(), plan), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name", ["ddim", "euler", "heun", "dpm_solver_pp_3m", "dpm_solver_2s", "unipc_bh2",
                                  "deis_3", "ipndm"])
def test_named_plans_in_a_loop(name):
    """Singlestep (intermediate requests), UniC correctors, Heun: timesteps from the dry run, nfe calls, same x0."""
    unet = tiny_unet()
    den = from_diffusers(unet, diffusers.DDPMScheduler(prediction_type="v_prediction"))
    plan = fs.plans.get(name, nfe=6, sigma_min=den.sigma_min, sigma_max=80.0)
    sch = FewStepScheduler.from_plan(plan, den)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    calls = _count_calls(unet)
    sch.set_timesteps(plan.nfe)
    x = n * sch.init_noise_sigma
    for t in sch.timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
    assert calls[0] == plan.nfe
    torch.testing.assert_close(x, fs.sample(den, n * plan.sigmas[0].float(), plan), rtol=0, atol=1e-4)


@pytest.mark.parametrize("name,opts", [("dpm_solver_pp_2m_sde", {}), ("euler_ancestral", {}),
                                       ("heun", {"S_churn": 10.0, "S_tmax": 50.0})])
def test_stochastic_plans_in_a_loop(name, opts):
    """A stochastic plan in the diffusers loop draws from step()'s generator exactly as fs.sample does."""
    unet = tiny_unet()
    den = from_diffusers(unet, diffusers.DDPMScheduler(prediction_type="v_prediction"))
    plan = fs.plans.get(name, nfe=5, sigma_min=den.sigma_min, sigma_max=80.0, **opts)
    sch = FewStepScheduler.from_plan(plan, den)
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(6))
    sch.set_timesteps(plan.nfe)
    x, g = n * sch.init_noise_sigma, torch.Generator().manual_seed(9)
    for t in sch.timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x, generator=g).prev_sample
    want = fs.sample(den, n * plan.sigmas[0].float(), plan, generator=torch.Generator().manual_seed(9))
    torch.testing.assert_close(x, want, rtol=1e-4, atol=1e-4)  # float32 UNet, unclamped x0 of size ~20
    if "S_churn" in opts:  # churn at x_T itself would need noise before the pipeline's first call: refused
        with pytest.raises(ValueError, match="S_tmax"):
            FewStepScheduler.from_plan(fs.plans.get(name, nfe=5, sigma_max=80.0, sigma_min=den.sigma_min,
                                                    S_churn=10.0), den)
