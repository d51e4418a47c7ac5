"""FewStepScheduler at another num_inference_steps, from another scheduler's config, and in img2img / inpainting."""

from __future__ import annotations

import math

import pytest
import torch
from bridge_models import diffusers, dpmpp_2m_plan, first_order_plan, tiny_cond_unet, tiny_unet

import fewstep as fs
from fewstep.bridge.load import from_diffusers
from fewstep.bridge.scheduler import FewStepScheduler
from fewstep.guidance import cfg
from fewstep.solvers.plan import Plan


def _loop(sch, unet, x, timesteps=None):
    calls = 0
    for t in sch.timesteps if timesteps is None else timesteps:
        x = sch.step(unet(sch.scale_model_input(x, t), t).sample, t, x).prev_sample
        calls += 1
    return x, calls


def _model(pt: str = "v_prediction"):
    unet = tiny_unet()
    train = diffusers.DDPMScheduler(prediction_type=pt)
    return unet, train, from_diffusers(unet, train)


def _grid(den, n: int) -> torch.Tensor:
    s = torch.logspace(math.log10(den.sigma_max) - 0.5, math.log10(den.sigma_min), n, dtype=torch.float64)
    return torch.cat([s, torch.zeros(1, dtype=torch.float64)])


@pytest.mark.parametrize("grid", ["logsnr", "karras"])
def test_named_plan_is_rebuilt_at_the_asked_nfe(tmp_path, grid):
    unet, train, den = _model()
    plan = fs.plans.get("dpm_solver_pp_2m", nfe=4, sigma_min=den.sigma_min, sigma_max=80.0, grid=grid)
    sch = FewStepScheduler.from_plan(plan, den)
    assert sch.config.constructor["grid"] == grid
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    sch.set_timesteps(9)
    want = fs.sample(den, n * 80.0, fs.plans.get("dpm_solver_pp_2m", nfe=9, sigma_min=den.sigma_min, sigma_max=80.0,
                                                 grid=grid))
    x, calls = _loop(sch, unet, n * sch.init_noise_sigma)
    assert calls == 9
    torch.testing.assert_close(x, want, rtol=0, atol=1e-4)
    sch.set_timesteps(4)  # back at its own NFE: the configured plan itself
    assert sch.plan is sch.plan0 and sch.plan == plan
    sch.save_pretrained(tmp_path)
    back = FewStepScheduler.from_pretrained(tmp_path)
    back.set_timesteps(7)
    assert len(back.timesteps) == 7 and back.plan.nfe == 7


def test_fixed_plan_refuses_another_nfe():
    _, train, den = _model()
    plan = dpmpp_2m_plan(_grid(den, 5))  # hand-made grid: no constructor rebuilds it
    searched = fs.plans.get("dpm_solver_pp_2m", nfe=4, sigma_min=den.sigma_min, sigma_max=80.0)
    searched = Plan(searched.sigmas, searched.steps, name=searched.name, metadata={"search": {"seed": 0}})
    for p in (plan, searched):
        sch = FewStepScheduler.from_plan(p, train)
        assert sch.config.constructor is None
        with pytest.raises(ValueError, match=f"num_inference_steps={p.nfe}"):
            sch.set_timesteps(50)
        sch.set_timesteps(p.nfe)
        assert len(sch.timesteps) == p.nfe
    with pytest.raises(ValueError, match="fixed plan"):  # constructor=False pins even a named plan
        FewStepScheduler.from_plan(fs.plans.get("ddim", nfe=3), train, constructor=False).set_timesteps(5)


@pytest.mark.parametrize("kw", [{}, {"solver": "unipc_bh2", "grid": "karras"}])
def test_from_config_of_a_diffusers_scheduler(kw):
    unet, train, den = _model("epsilon")
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=train)
    pipe.scheduler = FewStepScheduler.from_config(pipe.scheduler.config, **kw)
    pipe.set_progress_bar_config(disable=True)
    rec = pipe.scheduler.config.constructor
    assert rec["name"] == kw.get("solver", "dpm_solver_pp_2m") and rec["grid"] == kw.get("grid", "logsnr")
    assert (rec["sigma_min"], rec["sigma_max"]) == pytest.approx((den.sigma_min, den.sigma_max), rel=1e-12)
    calls = [0]
    unet.register_forward_pre_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    img = pipe(batch_size=2, num_inference_steps=5, generator=torch.Generator().manual_seed(0), output_type="pt").images
    assert calls[0] == 5
    plan = fs.plans.get(rec["name"], nfe=5, sigma_min=den.sigma_min, sigma_max=den.sigma_max, grid=rec["grid"])
    n = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    x0 = fs.sample(den, n * (1 + plan.sigmas[0] ** 2).sqrt().float(), plan)  # DDPMPipeline's latent is x_VP
    torch.testing.assert_close(img, (x0 / 2 + 0.5).clamp(0, 1), rtol=0, atol=1e-4)
    assert "DDPMScheduler" in [c.__name__ for c in pipe.scheduler.compatibles]


def test_from_config_flow_and_edm():
    sch = FewStepScheduler.from_config(diffusers.FlowMatchEulerDiscreteScheduler(shift=3.0).config)
    assert sch.schedule.is_flow and sch.schedule.prediction_type == "flow_prediction"
    with pytest.raises(ValueError, match="EDM"):
        FewStepScheduler.from_config(diffusers.EDMEulerScheduler().config)
    own = FewStepScheduler.from_plan(fs.plans.get("ddim", nfe=3))
    assert FewStepScheduler.from_config(own.config).plan == own.plan


@pytest.mark.parametrize("make_plan", [first_order_plan, dpmpp_2m_plan])
@pytest.mark.parametrize("strength", [1.0, 0.6])
def test_img2img_loop(make_plan, strength):
    """diffusers' img2img: set_timesteps, slice at t_start, set_begin_index, add_noise, step over the rest."""
    unet, train, den = _model()
    plan = make_plan(_grid(den, 6))
    sch = FewStepScheduler.from_plan(plan, train)
    g = torch.Generator().manual_seed(3)
    x0, noise = torch.randn(2, 3, 8, 8, generator=g).clamp(-1, 1), torch.randn(2, 3, 8, 8, generator=g)
    sch.set_timesteps(plan.nfe)
    n_steps = len(sch.timesteps)
    t_start = n_steps - min(int(n_steps * strength), n_steps)  # StableDiffusionImg2ImgPipeline.get_timesteps
    timesteps = sch.timesteps[t_start:]
    sch.set_begin_index(t_start)
    s = float(plan.sigmas[t_start])
    abar = 1 / (1 + s**2)
    assert float(timesteps[0]) == pytest.approx(float(den.timestep(s)), rel=1e-6)
    x = sch.add_noise(x0, noise, timesteps[:1])  # the pipeline's latent: x_VP = sqrt(abar) x0 + sqrt(1 - abar) n
    torch.testing.assert_close(x, math.sqrt(abar) * x0 + math.sqrt(1 - abar) * noise, rtol=0, atol=1e-6)
    out, calls = _loop(sch, unet, x, timesteps)
    assert calls == plan.nfe - t_start
    want = fs.sample(den, x0 + s * noise, make_plan(plan.sigmas[t_start:]))  # the same solver started at sigma_k
    torch.testing.assert_close(out, want, rtol=0, atol=1e-4)
    if strength == 1.0:  # a zero image: img2img at strength 1 is txt2img on the same noise
        sch.set_timesteps(plan.nfe)
        sch.set_begin_index(0)
        zero, _ = _loop(sch, unet, sch.add_noise(torch.zeros_like(x0), noise, sch.timesteps[:1]))
        sch.set_timesteps(plan.nfe)
        txt, _ = _loop(sch, unet, noise * sch.init_noise_sigma)
        torch.testing.assert_close(zero, txt, rtol=0, atol=1e-5)


def test_stable_diffusion_img2img_pipeline():
    pytest.importorskip("transformers")
    unet = tiny_cond_unet()
    train = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    den = from_diffusers(unet, train)
    plan = fs.plans.get("dpm_solver_pp_2m", nfe=6, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    pipe = diffusers.StableDiffusionImg2ImgPipeline(
        vae=None, text_encoder=None, tokenizer=None, unet=unet, scheduler=FewStepScheduler.from_plan(plan, train),
        safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.set_progress_bar_config(disable=True)
    emb, neg = torch.randn(1, 5, 8), torch.randn(1, 5, 8)
    image = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(7)) * 0.5  # 4 channels: taken as latents
    lat = pipe(prompt_embeds=emb, negative_prompt_embeds=neg, image=image, strength=0.5, num_inference_steps=6,
               guidance_scale=2.0, generator=torch.Generator().manual_seed(0), output_type="latent").images
    noise = torch.randn(1, 4, 8, 8, generator=torch.Generator().manual_seed(0))
    s = float(plan.sigmas[3])  # strength 0.5 of 6 evaluations: start at grid point 3
    tail = fs.plans.get("dpm_solver_pp_2m", nfe=3, sigmas=plan.sigmas[3:])  # the solver's own warm start
    want = fs.sample(cfg(den, 2.0, uncond=neg), image + s * noise, tail, cond=emb)
    torch.testing.assert_close(lat, want, rtol=0, atol=1e-4)


def test_changed_latent_restarts_and_singlestep_begin():
    """An inpainting-style blend after step k restarts the engine there; a clone of the latent does not."""
    unet, train, den = _model()
    plan = dpmpp_2m_plan(_grid(den, 6))
    sch = FewStepScheduler.from_plan(plan, train)
    noise = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    sch.set_timesteps(plan.nfe)
    ref, _ = _loop(sch, unet, noise * sch.init_noise_sigma)
    for blend in (False, True):
        sch.set_timesteps(plan.nfe)
        x, k = noise * sch.init_noise_sigma, 2
        for i, t in enumerate(sch.timesteps):
            x = sch.step(unet(x, t).sample, t, x).prev_sample
            if i == k - 1:
                x = x * 0.5 if blend else x.clone()
                x_k = x.double() * math.sqrt(1 + float(plan.sigmas[k]) ** 2)
        if not blend:
            assert torch.equal(x, ref)
        else:
            want = fs.sample(den, x_k.float(), dpmpp_2m_plan(plan.sigmas[k:]))
            torch.testing.assert_close(x, want, rtol=0, atol=1e-4)
    ss = FewStepScheduler.from_plan(fs.plans.get("dpm_solver_2s", nfe=6, sigma_min=den.sigma_min), train)
    ss.set_timesteps(6)
    ss.set_begin_index(2)  # the start of the second singlestep step
    with pytest.raises(ValueError, match="singlestep"):
        ss.set_begin_index(1)
