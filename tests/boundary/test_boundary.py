"""BoundaryDiffusion (fewstep.edit.boundary): inversion round trips on the analytic mixture against the exact ODE,
the SVM step and true signed distance on separable data (closed forms), the bottleneck hook, save/load, and
end-to-end edits (an analytic two-class mixture, a tiny UNet)."""

from __future__ import annotations

import math

import pytest
import torch

import fewstep as fs
from fewstep.edit import boundary as B
from fewstep.nets.unet import UNet
from fewstep.precond import Preconditioned, edm


def mixture(d: int = 8, sep: float = 3.0) -> fs.analytic.GaussianMixture:
    """Two isotropic classes at +-sep e_0 (std 0.3): the class is the sign of coordinate 0."""
    means = torch.zeros(2, d)
    means[0, 0], means[1, 0] = -sep, sep
    return fs.analytic.GaussianMixture(means, torch.tensor([0.3, 0.3]), sigma_min=0.002, sigma_max=80.0)


def ode_up(den: fs.analytic.GaussianMixture, x: torch.Tensor, s0: float, s1: float) -> torch.Tensor:
    """The exact PF-ODE dx/dsigma = (x - D(x, sigma)) / sigma (Karras et al. 2022 Eq. 3) from s0 up to s1, by scipy."""
    from scipy.integrate import solve_ivp

    def f(s: float, y):
        xt = torch.from_numpy(y).reshape(x.shape)
        return ((xt - den(xt, s)) / s).reshape(-1).numpy()

    sol = solve_ivp(f, (s0, s1), x.to(torch.float64).reshape(-1).numpy(), rtol=1e-9, atol=1e-9)
    return torch.from_numpy(sol.y[:, -1]).reshape(x.shape)


def draws(den: fs.analytic.GaussianMixture, n: int, seed: int = 0) -> torch.Tensor:
    return den.sample(n, torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("name,tol", [("ddim", 0.08), ("dpm_solver_pp_3m", 0.01)])
def test_inversion_reaches_the_exact_ode_latent_and_round_trips(name: str, tol: float) -> None:
    den = mixture()
    x0 = draws(den, 64).to(torch.float64)
    cfg = {"name": name, "nfe": 30, "sigma_min": 0.05}
    plan = B.edit_plan(den, 2.0, 30, name, 0.05)
    x_t = B.invert_to(den, x0, plan)
    exact = ode_up(den, x0, 0.05, 2.0)
    assert (fs.reference_solve(den, exact, 2.0, 0.05) - x0).abs().max() < 1e-5  # the exact ODE is invertible
    assert (x_t - exact).norm(dim=1).max() / exact.norm(dim=1).mean() < tol
    back = B.regenerate(den, x_t, plan)
    assert (back - x0).abs().max() < 5 * tol
    xt2, h = B.latents(den, x0, 2.0, cfg)
    assert h is None and torch.allclose(xt2, x_t)


def test_svm_on_two_points_is_the_perpendicular_bisector() -> None:
    p, q = torch.tensor([[3.0, 1.0, -2.0]]), torch.tensor([[-1.0, 2.0, 0.0]])
    hp = B.fit_svm(torch.cat([p, q]), torch.tensor([1, 0]), C=1e6)
    n = (p - q)[0] / (p - q).norm()
    assert torch.allclose(hp.w.double() / hp.w.double().norm(), n.double(), atol=1e-5)
    half = (p - q).norm().item() / 2
    d = hp.distance(torch.cat([p, q, (p + q) / 2]))
    assert torch.allclose(d, torch.tensor([half, -half, 0.0], dtype=torch.float64), atol=1e-4)


def test_svm_separates_clusters_and_move_lands_at_the_signed_distance() -> None:
    g = torch.Generator().manual_seed(0)
    w_true, b_true = torch.tensor([1.0, -2.0, 0.5, 0.0]), 1.5
    z = torch.randn(200, 4, generator=g) * 2
    f = (z @ w_true + b_true) / w_true.norm()
    keep = f.abs() > 0.5  # a margin: separable
    z, y = z[keep], (f[keep] > 0).long()
    hp = B.fit_svm(z, y, C=100.0, heldout=(z, y))
    assert hp.train_accuracy == 1.0 and hp.heldout_accuracy == 1.0
    cos = (hp.w.double() @ w_true.double()) / (hp.w.double().norm() * w_true.double().norm())
    assert cos > 0.98
    moved = B.move(z, hp.w, hp.b, 2.5)
    assert torch.allclose(hp.distance(moved), torch.full((len(z),), 2.5, dtype=torch.float64), atol=1e-5)
    step = moved - z  # along the normal only
    assert torch.allclose(step - (step @ (hp.w / hp.w.norm()))[:, None] * (hp.w / hp.w.norm()), torch.zeros_like(z),
                          atol=1e-5)
    # the intercept counts: a point on w.z = 0 (b ignored) is not at distance 0
    z0 = torch.zeros(1, 4)
    assert abs(hp.distance(z0).item() - hp.b / hp.w.double().norm().item()) < 1e-6
    assert torch.allclose(B.move(z, hp.w, hp.b, hp.distance(z)), z, atol=1e-5)  # no-op edit


def test_labels_must_be_binary_and_two_sided() -> None:
    z = torch.randn(6, 3)
    with pytest.raises(ValueError, match="binary"):
        B.fit_svm(z, torch.tensor([0, 1, 2, 0, 1, 2]))
    with pytest.raises(ValueError, match="one class"):
        B.fit_svm(z, torch.zeros(6, dtype=torch.long))


def test_end_to_end_edit_moves_the_analytic_class() -> None:
    den = mixture()
    x = draws(den, 200, seed=1).float()
    labels = (x[:, 0] > 0).long()
    b = B.fit(den, x, labels, sigma=1.0, plan={"nfe": 8}, attribute="class")
    assert b.h is None and b.space == "x" and b.x.train_accuracy == 1.0
    test = draws(den, 64, seed=2).float()
    neg = test[test[:, 0] < 0]
    out = B.apply(den, neg, b, distance=3.0)
    assert (out[:, 0] > 0).float().mean() > 0.95  # crossed to the other class
    same = B.apply(den, neg, b, distance=-3.0)  # staying on its side keeps the class
    assert (same[:, 0] < 0).all()
    # the other coordinates move little: the edit is along the class direction
    assert (out[:, 1:] - neg[:, 1:]).abs().mean() < 0.5


def test_save_and_load_round_trip(tmp_path) -> None:
    den = mixture()
    x = draws(den, 40).float()
    b = B.fit(den, x, (x[:, 0] > 0).long(), sigma=0.5, plan={"nfe": 4}, attribute="class")
    path = b.save(tmp_path / "b")
    c = B.load(path)
    assert c.sigma == b.sigma and c.plan == b.plan and c.h is None and c.info["attribute"] == "class"
    assert torch.equal(c.x.w, b.x.w) and c.x.b == b.x.b and c.x.spread == b.x.spread


def tiny_unet() -> Preconditioned:
    torch.manual_seed(0)
    net = UNet(in_channels=1, channels=8, channel_mult=(1, 2), num_blocks=1, attn_heads=2)
    for p in net.parameters():  # non-zero everywhere, so the bottleneck reaches the output
        torch.nn.init.normal_(p, std=0.2)
    return Preconditioned(net, edm(), 0.002, 80.0, shape=(1, 8, 8)).eval()


def test_hook_captures_and_a_no_op_edit_changes_nothing() -> None:
    den = tiny_unet()
    x = torch.randn(4, 1, 8, 8)
    with torch.no_grad():
        ref = den(x, 1.0)
        with B.Bottleneck(den) as hb:
            out = den(x, 1.0)
            h = hb.h
            hb.edit = lambda h, s: h.clone()
            same = den(x, 1.0)
            hb.edit = lambda h, s: h + 1.0
            moved = den(x, 1.0)
        after = den(x, 1.0)
    assert h is not None and h.shape == (4, 16, 4, 4)
    assert torch.equal(out, ref) and torch.equal(same, ref) and torch.equal(after, ref)
    assert not torch.allclose(moved, ref)
    assert hb.used is not None and torch.allclose(hb.used, h + 1.0)


def test_end_to_end_on_a_tiny_unet_both_spaces() -> None:
    den = tiny_unet()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(40, 1, 8, 8, generator=g).clamp(-1, 1)
    y = (x.mean((1, 2, 3)) > x.mean((1, 2, 3)).median()).long()
    b = B.fit(den, x, y, sigma=2.0, plan={"nfe": 3}, attribute="mean")
    assert b.h is not None and b.h.w.numel() == 16 * 4 * 4 and b.space == "both"
    assert b.info["seconds_fit"] > 0 and math.isfinite(b.x.spread)
    x_t, _ = B.latents(den, x[:8], b.sigma, b.plan)
    plain = B.regenerate(den, x_t, B.edit_plan(den, b.sigma, 3))
    noop = B.edit_latent(den, x_t, b, b.x.distance(x_t), space="x", units="raw")
    assert torch.allclose(noop, plain, atol=1e-5)
    edited = B.apply(den, x[:8], b, distance=2.0)
    assert edited.shape == x[:8].shape and torch.isfinite(edited).all() and not torch.allclose(edited, plain)
    h_only = B.apply(den, x[:8], b, distance=2.0, space="h")
    assert not torch.allclose(h_only, plain)
    stoch = B.apply(den, x[:8], b, distance=2.0, eta=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.isfinite(stoch).all()


@pytest.mark.slow  # importing diffusers dominates (~30 s on the shared 2 cores)
def test_hook_on_a_diffusers_unet2d_mid_block() -> None:
    from fewstep.nets.diffusers_unet import DiffusersUNet2D, unet2d_config

    torch.manual_seed(0)
    net = DiffusersUNet2D(unet2d_config(4, 8, (16, 32), attention_head_dim=8, norm_groups=8), num_classes=3)
    den = Preconditioned(net, edm(), 0.002, 80.0, shape=(4, 8, 8)).eval()
    assert B.middle_block(den) is net.unet.mid_block
    for p in net.unet.conv_out.parameters():  # diffusers zero-inits nothing here, but be sure the output depends
        torch.nn.init.normal_(p, std=0.2)
    x = torch.randn(3, 4, 8, 8)
    with torch.no_grad():
        ref = den(x, 2.0)
        with B.Bottleneck(den) as hb:
            hb.edit = lambda h, s: h.clone()
            same = den(x, 2.0)
            h = hb.h
            hb.edit = lambda h, s: h * 0
            moved = den(x, 2.0)
    assert h.shape == (3, 32, 4, 4)
    assert torch.equal(same, ref) and not torch.allclose(moved, ref)
