"""Quantizers against closed forms, TIAR's reach, per-step keying, and a tiny model quantized end to end."""

import math

import pytest
import torch
from torch import nn

import fewstep as fs
from fewstep import kinds
from fewstep.nets.unet import UNet
from fewstep.precond import Preconditioned, edm
from fewstep.quant.api import quantize, save
from fewstep.quant.calib import plan_pass
from fewstep.quant.model import QuantizedDenoiser, fresh_copy, parse_bits, roles
from fewstep.quant.quantizer import ActQuantizer, WeightQuantizer, affine_params, fake_quant, mse_search
from fewstep.quant.recon import ReconConfig, reconstruct_blocks, tiar

KW = {"in_channels": 1, "channels": 8, "channel_mult": [1, 2], "num_blocks": 1, "attn_heads": 2, "num_classes": 3}


def tiny() -> Preconditioned:
    torch.manual_seed(0)
    net = UNet(**KW)
    for p in net.parameters():
        nn.init.normal_(p, std=0.2)
    den = Preconditioned(net, edm(), 0.002, 80.0, shape=(1, 8, 8)).eval().requires_grad_(False)
    den.config = {"kind": "denoiser", "net": {"class": "unet", "kwargs": KW}, "precond": {"name": "edm",
                  "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0, "shape": [1, 8, 8]}
    return den


def test_affine_quantizer_by_hand():
    # 2 bits on [-0.5, 1]: delta = 1.5 / 3 = 0.5, z = 1, grid {-0.5, 0, 0.5, 1}
    delta, z = affine_params(torch.tensor(-0.5), torch.tensor(1.0), 2)
    assert float(delta) == pytest.approx(0.5) and float(z) == 1
    x = torch.tensor([-0.6, -0.2, 0.3, 0.7, 1.4])
    assert torch.allclose(fake_quant(x, delta, z, 2), torch.tensor([-0.5, 0.0, 0.5, 0.5, 1.0]))


def test_mse_search_exact_grid_and_outlier():
    on_grid = torch.arange(16.0) * 0.1  # exactly representable at 4 bits with delta 0.1: zero error at ratio 1
    outlier = torch.cat([torch.linspace(-1, 1, 15), torch.tensor([40.0])])
    w = torch.stack([on_grid, outlier])
    delta, z = mse_search(w, 4, channel_axis=0)
    assert float(delta[0]) == pytest.approx(0.1, rel=1e-5)
    q = fake_quant(w, delta[:, None], z[:, None], 4)
    assert torch.allclose(q[0], on_grid, atol=1e-6)
    d_mm, z_mm = affine_params(w[1].min(), w[1].max(), 4)
    err = lambda a: float((a - w[1]).abs().pow(2.4).mean())  # noqa: E731
    assert err(q[1]) < err(fake_quant(w[1], d_mm, z_mm, 4))  # clipping beats min-max under the Lp error
    assert float(delta[1]) < float(d_mm)


def test_adaround_starts_at_round_to_nearest_and_regulariser_closed_form():
    torch.manual_seed(1)
    w = torch.randn(4, 3, 3, 3)
    wq = WeightQuantizer(w, 4)
    nearest = wq(w)
    wq.init_adaround(w)
    inside = (w / wq.delta + wq.z >= 0) & (w / wq.delta + wq.z <= 15)  # the clip range
    assert inside.float().mean() > 0.8
    assert torch.allclose(wq(w)[inside], w[inside], atol=1e-5)  # soft rounding at init reproduces w there
    wq.soft = False
    assert torch.allclose(wq(w)[inside], nearest[inside], atol=1e-6)
    wq.alpha.data.fill_(100.0)  # h = 1 everywhere: 1 - |2 - 1|^beta = 0
    assert float(wq.round_loss(2.0)) == pytest.approx(0.0, abs=1e-6)
    wq.alpha.data.fill_(-math.log((1.1 + 0.1) / (0.5 + 0.1) - 1))  # h = 0.5: each weight adds exactly 1
    assert float(wq.round_loss(2.0)) == pytest.approx(w.numel(), rel=1e-4)


def test_parse_bits():
    assert parse_bits("w8a8") == (8, 8) and parse_bits("W4A32") == (4, None)
    with pytest.raises(ValueError):
        parse_bits("int8")


def test_roles_keep_first_last_and_shortcuts_fp_and_find_the_tib():
    r = roles(UNet(**KW), "tfmq")
    assert r["inp"] == "fp" and r["out.2"] == "fp"
    assert r["time_embed.1"] == "fp" and r["time_embed.3"] == "tib"
    assert all(v == "tib" for k, v in r.items() if k.endswith("emb_proj"))
    assert all(v == "fp" for k, v in r.items() if k.endswith(".skip"))
    rq = roles(UNet(**KW), "qdiffusion")
    assert all(v == "body" for k, v in rq.items() if k.endswith(".skip"))


def test_per_step_keys_select_different_activation_parameters():
    den = tiny()
    q = QuantizedDenoiser(fresh_copy(den), "w8a8", "tfmq", [10.0, 1.0])
    assert q.key_of(9.0) == 0 and q.key_of(1.2) == 1 and q.key_of(0.01) == 1
    a = ActQuantizer(4, keys=2)
    x = torch.linspace(-1, 1, 101)
    a.calibrate(0, x)
    a.calibrate(1, 0.1 * x)
    assert float(a.delta[0]) == pytest.approx(10 * float(a.delta[1]), rel=1e-4)
    assert not torch.allclose(a(x, 0), a(x, 1))
    # in the model: step 1's parameters are used at sigma 1 (so changing step 0's leaves that call unchanged)
    plan = fs.plans.get("euler", nfe=2, sigma_min=0.002, sigma_max=80.0)
    q2 = quantize(den, "w8a8", "tfmq", plan=plan, calib_n=8, recon=ReconConfig(iters=0), recon_n=16)
    assert len(q2.config["quant"]["keys"]) == 2
    x = torch.randn(4, 1, 8, 8)
    s1 = q2.config["quant"]["keys"][1]
    before = q2(x, s1)
    for m in q2.qlayers():
        if m.aq is not None:
            m.aq.delta.data[0] *= 3
    assert torch.equal(q2(x, s1), before)
    assert not torch.equal(q2(x, q2.config["quant"]["keys"][0]), before)


def test_tiar_touches_only_the_temporal_block():
    den = tiny()
    plan = fs.plans.get("euler", nfe=2, sigma_min=0.002, sigma_max=80.0)
    c = plan_pass(den, plan, 8, 0)
    q = QuantizedDenoiser(fresh_copy(den), "w4a8", "tfmq", c.keys)
    body = {m.name: m.org.weight.clone() for m in q.qlayers() if m.role != "tib"}
    tiar(q, den, c, ReconConfig(iters=3))
    for m in q.qlayers():
        if m.role == "tib" and m.wq is not None:
            assert m.wq.alpha is not None  # reconstructed
        elif m.wq is not None:
            assert m.wq.alpha is None  # untouched: no rounding variables
        assert m.role == "tib" or torch.equal(m.org.weight, body[m.name])
    tib = {m.name: m.wq.alpha.clone() for m in q.qlayers() if m.role == "tib" and m.wq is not None}
    reconstruct_blocks(q, den, c, ReconConfig(iters=2))
    for m in q.qlayers():  # and block reconstruction leaves the TIB as TIAR set it
        if m.name in tib:
            assert torch.equal(m.wq.alpha, tib[m.name])
        elif m.role == "body" and m.wq is not None:
            assert m.wq.alpha is not None


@pytest.mark.parametrize("method", ["tfmq", pytest.param("qdiffusion", marks=pytest.mark.slow)])
def test_tiny_model_quantizes_samples_and_round_trips(tmp_path, method):
    den = tiny()
    plan = fs.plans.get("heun", nfe=3, sigma_min=0.002, sigma_max=80.0, grid="karras")
    q = quantize(den, "w8a8", method, plan=plan, calib_n=8, recon=ReconConfig(iters=3, act_iters=2), recon_n=64)
    x_T = fs.seed.noise(6, 5, (1, 8, 8), float(plan.sigmas[0]))
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    ref, out = fs.sample(den, x_T, plan, cond=y), fs.sample(q, x_T, plan, cond=y)
    assert torch.isfinite(out).all()
    assert float((out - ref).norm() / ref.norm()) < 0.1  # W8A8 stays near full precision
    path = save(q, tmp_path / "q.safetensors")
    q2 = kinds.load(path)
    assert type(q2) is QuantizedDenoiser and q2.config["kind"] == "quantized"
    assert torch.allclose(fs.sample(q2, x_T, plan, cond=y), out, atol=1e-5)
    imgs = fs.generate(path, 4, seed=0)  # the recorded sampler: the plan it was calibrated for
    assert imgs.shape == (4, 1, 8, 8)


@pytest.mark.slow
def test_int8_pt2e_model_agrees_with_the_simulated_one():
    pytest.importorskip("torchao")
    from fewstep.nets.diffusers_unet import DiffusersUNet2D, unet2d_config
    from fewstep.quant.int8 import to_int8

    torch.manual_seed(0)  # a diffusers UNet2DModel, as mnist-ldm's (fewstep's UNet checks labels data-dependently,
    # which torch.export refuses)
    net = DiffusersUNet2D(unet2d_config(1, 8, (16, 32), attention_head_dim=8, norm_groups=8), num_classes=3)
    den = Preconditioned(net, edm(), 0.002, 80.0, shape=(1, 8, 8)).eval().requires_grad_(False)
    plan = fs.plans.get("euler", nfe=2, sigma_min=0.002, sigma_max=80.0)
    q = quantize(den, "w8a8", "tfmq", plan=plan, calib_n=16, recon=ReconConfig(iters=0), recon_n=32)
    q8 = to_int8(q, compile=False, batch=4)  # PT2E convert, eager (compiling takes minutes on a small CPU)
    x, s, y = torch.randn(6, 1, 8, 8) * 2.5, 2.5, torch.tensor([0, 1, 2, 0, 1, 2])  # 6 rows: chunked and padded
    ref, sim, real = den(x, s, y), q(x, s, y), q8(x, s, y)
    assert float((real - ref).norm() / ref.norm()) < 0.1
    assert float((real - sim).norm() / ref.norm()) < 0.1
    with pytest.raises(ValueError):
        to_int8(quantize(den, "w4a32", "tfmq", plan=plan, calib_n=4, recon=ReconConfig(iters=0), recon_n=8))
