"""Each preconditioning recovers x0 when its network outputs the parameterisation's true target."""

import pytest
import torch

from fewstep import precond as P

SIGMAS = torch.tensor([0.002, 0.1, 1.0, 7.0, 80.0], dtype=torch.float64)


def _setup():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(len(SIGMAS), 3, generator=g, dtype=torch.float64)
    n = torch.randn(len(SIGMAS), 3, generator=g, dtype=torch.float64)
    return x0, n, x0 + SIGMAS[:, None] * n


class _Const(torch.nn.Module):
    """A 'network' that returns a fixed tensor whatever its input."""

    def __init__(self, out):
        super().__init__()
        self.out = out
        self.dummy = torch.nn.Parameter(torch.zeros((), dtype=torch.float64))

    def forward(self, x_in, c_noise, cond=None):
        return self.out


def _targets(x0, n):
    s = SIGMAS[:, None]
    alpha, sigma_vp = 1 / (1 + s**2).sqrt(), s / (1 + s**2).sqrt()  # VP coordinates of the same point
    return {
        "eps": n,
        "v": alpha * n - sigma_vp * x0,        # Salimans & Ho (2022): v = alpha eps - sigma x0
        "x0": x0,
        "flow": n - x0,                          # rectified-flow velocity d x_t / d t
    }


@pytest.mark.parametrize("name", ["eps", "v", "x0", "flow"])
def test_true_target_gives_x0(name):
    x0, n, x = _setup()
    den = P.Preconditioned(_Const(_targets(x0, n)[name]), P.get(name), 0.002, 80.0)
    torch.testing.assert_close(den(x, SIGMAS), x0, rtol=1e-9, atol=1e-9)


def test_edm_gaussian_optimum_is_zero_output():
    # For data N(0, sigma_data^2), E[x0|x] = sigma_data^2/(sigma^2+sigma_data^2) x = c_skip x, i.e. F = 0.
    x0, n, x = _setup()
    den = P.Preconditioned(_Const(torch.zeros_like(x)), P.edm(0.5), 0.002, 80.0)
    torch.testing.assert_close(den(x, SIGMAS), 0.25 / (SIGMAS[:, None] ** 2 + 0.25) * x)
    # and c_in gives the network unit-variance inputs: var(c_in x) = c_in^2 (sigma_data^2 + sigma^2) = 1
    pc = P.edm(0.5)
    torch.testing.assert_close(pc.c_in(SIGMAS) ** 2 * (0.25 + SIGMAS**2), torch.ones_like(SIGMAS))


def test_raw_target_roundtrip():
    x0, n, x = _setup()
    for name in ["edm", "eps", "v", "flow"]:
        pc = P.get(name)
        F = P.raw_target(pc, x0, x, SIGMAS)
        torch.testing.assert_close(P.Preconditioned(_Const(F), pc, 0.002, 80.0)(x, SIGMAS), x0)


def test_consistency_boundary_is_identity():
    x = torch.randn(4, 3, dtype=torch.float64)
    den = P.Preconditioned(_Const(torch.randn(4, 3, dtype=torch.float64)), P.consistency(0.002), 0.002, 80.0)
    torch.testing.assert_close(den(x, 0.002), x, rtol=0, atol=1e-12)


def test_unknown_and_bad_range():
    with pytest.raises(KeyError, match="known"):
        P.get("nope")
    with pytest.raises(ValueError, match="smaller"):
        P.Preconditioned(_Const(torch.zeros(1)), P.edm(), 80.0, 0.002)
