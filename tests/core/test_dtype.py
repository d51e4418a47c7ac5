"""Half precision: every shipped model samples in bf16, fp16 and under CPU autocast, close to float32.

Tolerances, from measurements on 32 samples x 3 seeds (4-step DPM-Solver++(2M), data in [-1, 1]): bf16 and bf16
autocast give a mean |x0 - x0_fp32| of 0.002-0.006 (about one bf16 unit roundoff, 2^-8 = 0.0039), a 99th
percentile <= 0.024 and a worst pixel <= 0.095 (the consistency students' one-step jumps amplify a few pixels);
fp16 gives a mean <= 0.0008 (1.6 fp16 roundoffs, 2^-11) and a worst pixel <= 0.016. Bounds are 3-5x those.
"""

import pytest
import torch

import fewstep as fs
from fewstep import nets
from fewstep.nets.layers import NoiseEmbedding

TOL = {"bf16": (0.02, 0.06, 0.4), "autocast": (0.02, 0.06, 0.4), "fp16": (0.004, 0.01, 0.08)}


def _run(name, mode, n):
    den = fs.zoo.load(name)
    plan = fs.plans.get("dpm_solver_pp_2m", nfe=4, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    x_T = torch.randn(n, *den.shape, generator=torch.Generator().manual_seed(0)) * plan.sigmas[0]
    classes = fs.zoo.lookup.num_classes(den)
    y = torch.arange(n) % (classes + 1) if classes else None  # label `classes` = unconditional
    ref = fs.sample(den, x_T, plan, cond=y)
    if mode == "autocast":
        with torch.autocast("cpu", dtype=torch.bfloat16):
            x = fs.sample(den, x_T, plan, cond=y)
    else:
        x = fs.sample(fs.zoo.load(name).to({"bf16": torch.bfloat16, "fp16": torch.float16}[mode]), x_T, plan,
                      cond=y)
    return x, ref


GENERATORS = [n for n in fs.zoo.names() if fs.kinds.model_kind(fs.zoo.load(n)).sampler is not None]


@pytest.mark.parametrize("mode", ["bf16", "autocast", "fp16"])
@pytest.mark.parametrize("name", GENERATORS)
def test_zoo_models_sample_in_half_precision_close_to_float32(name, mode):
    x, ref = _run(name, mode, 32 if mode != "fp16" else 12)
    assert x.dtype == ref.dtype == torch.float32 and torch.isfinite(x).all()
    err = (x - ref).abs()
    mean, q99, worst = TOL[mode]
    if fs.kinds.model_kind(fs.zoo.load(name)).name.startswith("quantized") and mode == "fp16":
        mean, q99, worst = TOL["bf16"]  # fp16 rounding moves activations across quantization bins: one step each
    assert err.mean() < mean and err.quantile(0.99) < q99 and err.max() < worst, (
        f"{name} {mode}: mean {err.mean():.4f}, q99 {err.quantile(0.99):.4f}, max {err.max():.4f}")
    assert err.max() > 0  # the half-precision path really ran


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_shipped_autoencoder_round_trips_in_half_precision(dtype):
    ae = fs.zoo.load("mnist-ae")
    x = fs.data.get("mnist5k", "test").x[::50]
    ref = ae.decode(ae.encode(x))
    half = fs.zoo.load("mnist-ae").to(dtype)
    out = half.decode(half.encode(x)).float()
    err = (out - ref).abs()
    assert torch.isfinite(out).all() and err.mean() < 0.02 and err.max() > 0


def test_half_precision_net_gets_exact_frequencies_and_float32_stays_float32():
    emb = NoiseEmbedding(16, scale=3.0)
    ref = emb.freqs.clone()
    assert torch.equal(emb.to(torch.bfloat16).freqs, ref) and ref.dtype == torch.float32
    net = nets.UNet(channels=16, channel_mult=(1, 2), num_blocks=1, num_classes=3, conds={"w": {"kind": "scalar"}})
    x, c, cond = torch.randn(2, 1, 8, 8), torch.randn(2), {"y": torch.tensor([0, 3]), "w": 2.0}
    assert net(x, c, cond).dtype == torch.float32
    half = net.to(torch.bfloat16)
    assert half(x.bfloat16(), c, cond).dtype == torch.bfloat16  # float32 c_noise into a bf16 net is fine
