"""from_diffusers against closed forms written here from the DDPM / v-prediction / rectified-flow definitions."""

from __future__ import annotations

import json
import logging
import math
import subprocess
import sys

import numpy as np
import pytest
import torch
from bridge_models import diffusers, tiny_cond_unet, tiny_unet

from fewstep.bridge.load import from_diffusers, is_diffusers_dir


def _t_index(sigma: float, acp: torch.Tensor) -> float:
    """Continuous DDPM index: linear interpolation of log sigma_k = log sqrt((1-abar_k)/abar_k) in k."""
    log_s = (((1 - acp) / acp).sqrt()).log().numpy()
    return float(np.interp(math.log(sigma), log_s, np.arange(len(log_s))))


def _closed_form_x0(pt: str, out: torch.Tensor, x_vp: torch.Tensor, abar: float) -> torch.Tensor:
    a, s = math.sqrt(abar), math.sqrt(1 - abar)
    if pt == "epsilon":
        return (x_vp - s * out) / a  # Ho et al. 2020, Eq. 15 solved for x0
    if pt == "sample":
        return out
    return a * x_vp - s * out  # v = a eps - s x0 (Salimans & Ho 2022, Sec. 4)


@pytest.mark.parametrize("pt", ["epsilon", "sample", "v_prediction"])
def test_prediction_types_match_closed_form(tmp_path, pt):
    unet = tiny_unet()
    sched = diffusers.DDPMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
                                    prediction_type=pt)
    diffusers.DDPMPipeline(unet=unet, scheduler=sched).save_pretrained(tmp_path)
    assert is_diffusers_dir(tmp_path)
    den = from_diffusers(tmp_path, dtype=torch.float64)
    assert den.shape == (3, 8, 8)
    acp = sched.alphas_cumprod.double()
    sig = ((1 - acp) / acp).sqrt()
    assert den.sigma_min == pytest.approx(float(sig[0])) and den.sigma_max == pytest.approx(float(sig[-1]))
    raw = unet.double()
    g = torch.Generator().manual_seed(1)
    for sigma in (0.05, 0.7, float(sig[321]), 9.0):
        t = _t_index(sigma, acp)
        assert float(den.timestep(sigma)) == pytest.approx(t, abs=1e-9)
        abar = 1 / (1 + sigma**2)
        x = torch.randn(2, 3, 8, 8, generator=g, dtype=torch.float64) * math.sqrt(1 + sigma**2)
        x_vp = math.sqrt(abar) * x
        out = raw(x_vp, torch.full((2,), t, dtype=torch.float64)).sample
        torch.testing.assert_close(den(x, sigma), _closed_form_x0(pt, out, x_vp, abar), rtol=1e-6, atol=1e-6)
    assert float(den.timestep(float(sig[321]))) == pytest.approx(321.0, abs=1e-6)


def test_rounded_timesteps(tmp_path):
    sched = diffusers.DDPMScheduler()
    den = from_diffusers(tiny_unet(), sched, round_timesteps=True)
    acp = sched.alphas_cumprod.double()
    for sigma in (0.3, 2.0, 40.0):
        assert float(den.timestep(sigma)) == round(_t_index(sigma, acp))


def test_class_conditional(tmp_path):
    unet = tiny_unet(num_class_embeds=3)
    unet.save_pretrained(tmp_path / "unet_only")
    diffusers.DDPMScheduler(prediction_type="v_prediction").save_pretrained(tmp_path / "unet_only")
    den = from_diffusers(tmp_path / "unet_only", dtype=torch.float64)  # scheduler_config.json beside the UNet
    raw = unet.double()
    sigma, labels = 1.3, torch.tensor([0, 2])
    x = torch.randn(2, 3, 8, 8, dtype=torch.float64)
    abar = 1 / (1 + sigma**2)
    t = torch.full((2,), float(den.timestep(sigma)), dtype=torch.float64)
    out = raw(math.sqrt(abar) * x, t, class_labels=labels).sample
    want = _closed_form_x0("v_prediction", out, math.sqrt(abar) * x, abar)
    torch.testing.assert_close(den(x, sigma, labels), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(den(x, sigma, {"class_labels": labels}), want, rtol=1e-6, atol=1e-6)
    assert (den(x, sigma, labels) - den(x, sigma, torch.tensor([1, 1]))).abs().max() > 1e-4


def test_cross_attention_unet(tmp_path):
    unet = tiny_cond_unet()
    unet.save_pretrained(tmp_path / "m" / "unet")
    diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012).save_pretrained(
        tmp_path / "m" / "scheduler")
    den = from_diffusers(tmp_path / "m", dtype=torch.float64)
    raw = unet.double()
    emb = torch.randn(2, 5, 8, dtype=torch.float64)
    sigma = 3.0
    x = torch.randn(2, 4, 8, 8, dtype=torch.float64) * math.sqrt(1 + sigma**2)
    abar = 1 / (1 + sigma**2)
    t = torch.full((2,), float(den.timestep(sigma)), dtype=torch.float64)
    out = raw(math.sqrt(abar) * x, t, encoder_hidden_states=emb).sample
    want = _closed_form_x0("epsilon", out, math.sqrt(abar) * x, abar)
    torch.testing.assert_close(den(x, sigma, emb), want, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(den(x, torch.tensor([sigma, sigma]), {"encoder_hidden_states": emb}), want)


def test_flow_matching_schedule(tmp_path):
    shift = 3.0
    sched = diffusers.FlowMatchEulerDiscreteScheduler(shift=shift)
    sched.save_pretrained(tmp_path / "scheduler")
    tiny_unet().save_pretrained(tmp_path / "unet")
    den = from_diffusers(tmp_path, dtype=torch.float64)
    assert den.schedule.is_flow and den.schedule.prediction_type == "flow_prediction"
    # diffusers' own training grid: timesteps = t * 1000 with t = shift-ed k/1000; sigma_VE = t / (1 - t)
    t_flow = sched.sigmas.double()
    sig_ve = t_flow / (1 - t_flow.clamp(max=0.999))
    for k in (5, 300, 999):
        got = float(den.timestep(sig_ve[k]))
        assert got == pytest.approx(float(sched.timesteps[k]), rel=1e-5)
    assert den.sigma_min == pytest.approx(float(sched.sigma_min / (1 - sched.sigma_min)), rel=1e-5)
    # x0 = x_t - t v on x_t = (1 - t) x0 + t n (rectified flow), the model sees x_t and 1000 t
    raw = den.unet
    sigma = 0.8
    t = sigma / (1 + sigma)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    x_t = (1 - t) * x
    v = raw(x_t, torch.tensor([1000 * t], dtype=torch.float64)).sample
    torch.testing.assert_close(den(x, sigma), x_t - t * v, rtol=1e-6, atol=1e-6)


def test_pipeline_object_and_learned_variance():
    unet = tiny_unet(out_channels=6)
    pipe = diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler(variance_type="learned_range"))
    den = from_diffusers(pipe, dtype=torch.float64)
    x = torch.randn(1, 3, 8, 8, dtype=torch.float64)
    out = unet(x / math.sqrt(2), torch.tensor([float(den.timestep(1.0))], dtype=torch.float64)).sample[:, :3]
    torch.testing.assert_close(den(x, 1.0), x - out)  # eps: x0 = x_VE - sigma eps at sigma = 1


def test_missing_path_and_missing_scheduler(tmp_path):
    with pytest.raises(FileNotFoundError, match="unet/config.json"):
        from_diffusers(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="config.json"):
        from_diffusers(tmp_path)
    tiny_unet().save_pretrained(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="scheduler"):
        from_diffusers(tmp_path / "bare")
    with pytest.raises(FileNotFoundError, match="scheduler"):
        from_diffusers(tiny_unet())
    assert not is_diffusers_dir(tmp_path) and not is_diffusers_dir(tmp_path / "nope")
    assert is_diffusers_dir(tmp_path / "bare")
    den = from_diffusers(tmp_path / "bare", scheduler=diffusers.DDPMScheduler().config)
    assert den.schedule.prediction_type == "epsilon"


def test_import_fewstep_does_not_import_diffusers():
    code = ("import sys, fewstep, fewstep.bridge.load, fewstep.guidance; fewstep.from_diffusers; "
            "assert 'diffusers' not in sys.modules, 'diffusers imported eagerly'")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_torch_dtype_network_runs_in_it_and_returns_x_dtype(tmp_path):
    unet = tiny_cond_unet()
    sched = diffusers.DDIMScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)
    unet.save_pretrained(tmp_path / "unet")
    sched.save_pretrained(tmp_path / "scheduler")
    ref = from_diffusers(tmp_path, dtype=torch.float64)
    half = from_diffusers(tmp_path, torch_dtype=torch.bfloat16)
    assert next(half.unet.parameters()).dtype == torch.bfloat16
    x, emb = torch.randn(2, 4, 8, 8) * 3, torch.randn(2, 5, 8)
    out = half(x, 3.0, emb)  # float32 x and prompt embeds into a bfloat16 UNet
    assert out.dtype == torch.float32
    want = ref(x.double(), 3.0, emb.double())
    assert (out.double() - want).abs().max() < 0.1 * want.abs().max()  # bfloat16 keeps ~3 significant digits
    seen = []
    half.unet.register_forward_pre_hook(lambda m, a: seen.append(a[1].dtype))
    half(x, 3.0, emb)
    assert seen == [torch.float32]  # the timestep stays float32, as diffusers pipelines pass it
    assert from_diffusers(tiny_unet(), diffusers.DDPMScheduler(), torch_dtype=torch.float64).unet.dtype == torch.float64
    with pytest.raises(ValueError, match="disagree"):
        from_diffusers(tiny_unet(), diffusers.DDPMScheduler(), dtype=torch.float64, torch_dtype=torch.float16)


@pytest.mark.parametrize("layout", ["model_index", "transformer_dir", "bare"])
def test_transformer_backbones_are_refused_clearly(tmp_path, layout):
    cfg = {"_class_name": "SD3Transformer2DModel", "_diffusers_version": "0.42.1", "sample_size": 8}
    if layout == "model_index":
        (tmp_path / "model_index.json").write_text(json.dumps({
            "_class_name": "StableDiffusion3Pipeline", "transformer": ["diffusers", "SD3Transformer2DModel"],
            "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"]}))
        root = tmp_path
    elif layout == "transformer_dir":
        (tmp_path / "transformer").mkdir()
        (tmp_path / "transformer" / "config.json").write_text(json.dumps(cfg))
        root = tmp_path
    else:
        root = tmp_path / "bare"
        root.mkdir()
        (root / "config.json").write_text(json.dumps(cfg))
        diffusers.FlowMatchEulerDiscreteScheduler().save_pretrained(root)
    with pytest.raises(ValueError, match=r"SD3Transformer2DModel.*UNet2DModel and UNet2DConditionModel.*not supported"):
        from_diffusers(root)


def test_loading_a_folder_prints_no_warning(tmp_path):
    diffusers.DDPMPipeline(unet=tiny_unet(), scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path)
    records: list[logging.LogRecord] = []
    handler = logging.Handler(logging.WARNING)
    handler.emit = records.append
    root = logging.getLogger("diffusers")  # diffusers' own logger (it does not propagate to pytest's caplog)
    root.addHandler(handler)
    try:
        from_diffusers(tmp_path)
    finally:
        root.removeHandler(handler)
    assert not records, [r.getMessage() for r in records]
