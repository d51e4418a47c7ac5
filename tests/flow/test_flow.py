"""Latent flow matching: the velocity <-> denoiser adapter against a Gaussian's exact field, the flow loss's
minimum against its closed form, minibatch OT against brute force, the exact-ODE reference against the Gaussian's
affine flow map, and a tiny `fewstep latent train-lfm` run whose diffusers folder reproduces the trained model."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
from torch import nn

from fewstep.flow.coupling import couple, ot_permutation
from fewstep.flow.velocity import solve, velocity, velocity_denoiser
from fewstep.train.losses import flow_loss

MU, S = 0.7, 0.3  # data N(MU, S^2 I)


def posterior_mean(z: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """E[x0 | z_t] for x0 ~ N(MU, S^2), z_t = (1-t) x0 + t n."""
    var = (1 - t) ** 2 * S**2 + t**2
    return MU + (1 - t) * S**2 / var * (z - (1 - t) * MU)


class GaussVelocity(nn.Module):
    """The exact velocity field v*(z, t) = (z - E[x0|z_t]) / t of the Gaussian data, as a raw net(z, 1000 t)."""

    def __init__(self) -> None:
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, z: torch.Tensor, c_noise: torch.Tensor, cond=None) -> torch.Tensor:
        t = (c_noise.to(torch.float64) / 1000).reshape(-1, *(1,) * (z.ndim - 1))
        return ((z.double() - posterior_mean(z.double(), t)) / t).to(z.dtype)


def gauss_den():
    return velocity_denoiser(GaussVelocity().double(), time_scale=1000.0, shape=(3,))


def test_velocity_denoiser_is_the_gaussian_posterior_mean():
    den = gauss_den()
    x = torch.randn(64, 3, dtype=torch.float64)
    for sigma in (0.01, 0.3, 1.0, 7.0, 200.0):
        exact = MU + S**2 / (S**2 + sigma**2) * (x - MU)  # the VE denoiser of N(MU, S^2)
        torch.testing.assert_close(den(x, sigma), exact, rtol=1e-9, atol=1e-9)
    z, t = torch.randn(8, 3, dtype=torch.float64), 0.4
    torch.testing.assert_close(velocity(den, z, t), (z - posterior_mean(z, torch.tensor(t))) / t)


def test_flow_loss_at_the_exact_field_is_the_conditional_variance():
    # E_t Var(n - x0 | z_t) per coordinate = int_0^1 S^2 / ((1-t)^2 S^2 + t^2) dt
    ts = torch.linspace(0, 1, 200_001, dtype=torch.float64)
    expected = torch.trapezoid(S**2 / ((1 - ts) ** 2 * S**2 + ts**2), ts).item()
    g = torch.Generator().manual_seed(0)
    x0 = MU + S * torch.randn(200_000, 3, generator=g, dtype=torch.float64)
    loss = flow_loss(gauss_den(), x0, generator=g).mean().item()
    assert loss == pytest.approx(expected, rel=0.02)
    wrong = velocity_denoiser(nn.Identity(), time_scale=1000.0)  # v = z: not the field, a larger loss
    wrong.net.forward = lambda z, c, cond=None: z  # type: ignore[method-assign]
    assert flow_loss(wrong, x0[:20_000], generator=g).mean().item() > 1.2 * expected


def test_ot_permutation_is_the_brute_force_optimum():
    g = torch.Generator().manual_seed(1)
    x0, n = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)

    def cost(p):
        return sum(((x0[i] - n[j]) ** 2).sum().item() for i, j in enumerate(p))
    best = min(cost(p) for p in itertools.permutations(range(6)))
    pi = ot_permutation(x0, n)
    assert sorted(pi.tolist()) == list(range(6))
    assert cost(pi.tolist()) == pytest.approx(best, rel=1e-9)
    assert couple(x0, n, "independent") is n
    with pytest.raises(ValueError, match="unknown coupling"):
        couple(x0, n, "sinkhorn")


def test_dopri5_reference_follows_the_gaussian_flow_map():
    den = gauss_den()
    x_T = float(den.sigma_max) * torch.randn(16, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = solve(den, x_T, rtol=1e-7, atol=1e-7)
    t_hi, t_lo = den.sigma_max / (1 + den.sigma_max), den.sigma_min / (1 + den.sigma_min)

    def r(t):
        return math.sqrt((1 - t) ** 2 * S**2 + t**2)
    xi = (x_T / (1 + den.sigma_max) - (1 - t_hi) * MU) / r(t_hi)
    z_lo = (1 - t_lo) * MU + r(t_lo) * xi
    exact = MU + S**2 / (S**2 + den.sigma_min**2) * (z_lo / (1 - t_lo) - MU)
    torch.testing.assert_close(out.x, exact, rtol=1e-4, atol=1e-4)
    assert out.nfe > 5


def test_train_lfm_folder_reproduces_the_trained_velocity_model(tmp_path, blob_images):
    from click.testing import CliRunner

    import fewstep as fs
    from fewstep.cli.main import cli

    ae = fs.zoo.path("mnist-ae")
    res = CliRunner().invoke(cli, ["latent", "train-lfm", "--ae", str(ae), "--steps", "3", "--batch", "16",
                                   "--unet-channels", "16,32", "--coupling", "ot", "--quiet", "--out",
                                   str(tmp_path / "lfm")])
    assert res.exit_code == 0, res.output
    meta = json.loads((tmp_path / "lfm" / "fewstep.json").read_text())
    assert meta["train"]["loss"] == "flow" and meta["train"]["loss_kwargs"] == {"coupling": "ot"}
    den = fs.zoo.load(str(tmp_path / "lfm"))
    assert den.den.schedule.is_flow and den.sigma_max == pytest.approx(999.0, rel=1e-6)
    ckpt = torch.load(tmp_path / "lfm.ckpt.pt", weights_only=False)
    trained = fs.io.build_denoiser(ckpt["config"]["model"])
    trained.load_state_dict({k[len("module."):]: v for k, v in ckpt["ema"].items() if k.startswith("module.")})
    z = torch.randn(4, *den.shape, generator=torch.Generator().manual_seed(0))
    y = torch.arange(4)
    for sigma in (0.05, 1.0, 30.0):
        torch.testing.assert_close(den(z, sigma, y), trained(z, sigma, y), rtol=2e-2, atol=2e-2)  # fp16 folder


@pytest.mark.skipif("mnist-lfm" not in __import__("fewstep").zoo.names(), reason="mnist-lfm not shipped")
def test_shipped_mnist_lfm_generates_the_asked_digits():
    import fewstep as fs
    from fewstep.metrics import classifier

    y = torch.arange(20) % 10
    x = fs.generate("mnist-lfm", 20, nfe=5, labels=y, guidance=2.0)
    assert x.shape == (20, 1, 28, 28) and x.abs().max() <= 1
    den = fs.zoo.load("mnist-lfm")
    assert den.den.schedule.is_flow and den.config["train"]["loss"] == "flow"
    assert (classifier.class_probs(x, "mnist5k").argmax(1) == y).float().mean() >= 0.8
