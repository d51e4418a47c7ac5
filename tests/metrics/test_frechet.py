"""Fréchet distance against closed forms, and FD-digits against what it must separate."""

import numpy as np
import pytest
import torch

from fewstep.metrics import frechet as F


def spd(d: int, rng: np.random.Generator) -> np.ndarray:
    a = rng.standard_normal((d, d))
    return a @ a.T / d + 0.1 * np.eye(d)


def psd_sqrt(s: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(s)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


METHODS = ["eigh", "sqrtm"]


@pytest.mark.parametrize("method", METHODS)
def test_one_dimensional_closed_form(method):
    # W2 between N(m1, s1^2) and N(m2, s2^2) is (m1 - m2)^2 + (s1 - s2)^2
    assert F.frechet_distance([1.0], [[4.0]], [-2.0], [[0.25]], method) == pytest.approx(9 + 1.5**2, rel=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_commuting_covariances_closed_form(method):
    # same eigenbasis Q: FD = ||mu1 - mu2||^2 + sum_i (sqrt(a_i) - sqrt(b_i))^2
    rng = np.random.default_rng(0)
    d = 6
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    a, b = rng.uniform(0.1, 3, d), rng.uniform(0.1, 3, d)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    want = ((mu1 - mu2) ** 2).sum() + ((np.sqrt(a) - np.sqrt(b)) ** 2).sum()
    got = F.frechet_distance(mu1, q @ np.diag(a) @ q.T, mu2, q @ np.diag(b) @ q.T, method)
    assert got == pytest.approx(want, rel=1e-8)


def test_general_covariances_match_scipy_sqrtm():
    # tr sqrt(S1 S2) by scipy's Schur sqrtm of the (non-symmetric) product, against the default eigh route
    rng = np.random.default_rng(1)
    d = 8
    s1, s2 = spd(d, rng), spd(d, rng)
    mu1, mu2 = rng.standard_normal(d), rng.standard_normal(d)
    want = F.frechet_distance(mu1, s1, mu2, s2, method="sqrtm")
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(want, rel=1e-8)


def test_general_covariances_by_direct_sqrt():
    # independent route: the matrix square root by eigh, tr sqrt(S1^1/2 S2 S1^1/2) = tr sqrt(S1 S2)
    rng = np.random.default_rng(3)
    d = 8
    s1, s2 = spd(d, rng), spd(d, rng)
    r = psd_sqrt(s1)
    want = np.trace(s1 + s2 - 2 * psd_sqrt(r @ s2 @ r))
    assert F.frechet_distance(np.zeros(d), s1, np.zeros(d), s2, "sqrtm") == pytest.approx(want, rel=1e-8)


def test_identity_symmetry_translation():
    rng = np.random.default_rng(2)
    d = 5
    s1, s2 = spd(d, rng), spd(d, rng)
    mu1, mu2, t = rng.standard_normal(d), rng.standard_normal(d), rng.standard_normal(d)
    assert F.frechet_distance(mu1, s1, mu1, s1) == pytest.approx(0, abs=1e-9)
    assert F.frechet_distance(mu1, s1, mu2, s2) == pytest.approx(F.frechet_distance(mu2, s2, mu1, s1), rel=1e-9)
    assert F.frechet_distance(mu1 + t, s1, mu2 + t, s2) == pytest.approx(F.frechet_distance(mu1, s1, mu2, s2),
                                                                         rel=1e-9)
    # a pure mean shift adds exactly ||t||^2
    assert F.frechet_distance(mu1 + t, s1, mu1, s1) == pytest.approx((t**2).sum(), rel=1e-8)


@pytest.mark.parametrize("method", METHODS)
def test_singular_covariances_are_finite(method):
    s = np.diag([1.0, 0.0, 0.0])
    assert F.frechet_distance(np.zeros(3), s, np.zeros(3), s, method) == pytest.approx(0, abs=1e-4)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shape mismatch"):
        F.frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


def test_sample_statistics_converge_to_closed_form():
    g = torch.Generator().manual_seed(0)
    a = torch.randn(200_000, 2, generator=g, dtype=torch.float64)
    b = torch.randn(200_000, 2, generator=g, dtype=torch.float64) * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, 0])
    want = 1 + (1 - 2) ** 2 + (1 - 0.5) ** 2
    assert F.fd_between(F.stats_of(a), F.stats_of(b)) == pytest.approx(want, rel=0.02)


def test_vector_data_sets_use_coordinates():
    from fewstep import data

    x = data.get("gmm8", "test").x[:512]
    assert F.fd(x, "gmm8") < 0.05 < F.fd(x + 1.0, "gmm8")


# ---- FD-digits on real data ----

@pytest.fixture(scope="module")
def digits():
    from fewstep import data

    return data.get("digits", "train"), data.get("digits", "test")


def blur(x: torch.Tensor) -> torch.Tensor:
    k = torch.ones(1, 1, 3, 3) / 9
    return torch.nn.functional.conv2d(torch.nn.functional.pad(x, (1,) * 4, mode="replicate"), k)


def test_real_digits_beat_noise_and_blur(digits):
    train, test = digits
    stats_train = F.stats_of(F.features(train.x, "digits"))
    fd_real = F.fd_between(F.stats_of(F.features(test.x, "digits")), stats_train)
    noise = torch.randn_like(test.x).clamp(-1, 1)
    fd_noise = F.fd_between(F.stats_of(F.features(noise, "digits")), stats_train)
    fd_blur = F.fd_between(F.stats_of(F.features(blur(test.x), "digits")), stats_train)
    assert fd_real * 10 < fd_blur < fd_noise


def test_noise_floor_positive_below_corruptions(digits):
    _, test = digits
    n = 256
    floor = F.noise_floor("digits", n)
    assert floor > 0
    assert floor * 5 < F.fd(blur(test.x[:n]), "digits")
    # the floor shrinks as n grows (FD's bias ~ 1/n)
    assert F.noise_floor("digits", F.max_floor_n("digits")) < floor


def test_real_halves_are_disjoint_and_cover():
    ref, held = F.real_halves("digits")
    assert len(set(ref.tolist()) & set(held.tolist())) == 0
    assert len(ref) + len(held) == 1797


def test_bad_samples_are_errors():
    with pytest.raises(ValueError, match="shape"):
        F.fd(torch.zeros(10, 1, 28, 28), "digits")
    with pytest.raises(ValueError, match="NaN"):
        F.fd(torch.full((10, 1, 8, 8), float("nan")), "digits")
    with pytest.raises(ValueError, match="n <="):
        F.noise_floor("digits", 10_000)


def test_paired_bootstrap_ratio_brackets_a_real_difference():
    g = torch.Generator().manual_seed(0)
    ref = F.stats_of(torch.randn(4000, 3, generator=g))
    z = torch.randn(1000, 3, generator=g)
    lo, hi = F.paired_bootstrap_ratio(z + 0.3, z + 0.6, ref, n_boot=100)
    assert lo < hi < 0.5  # FD grows with the square of the shift: ratio ~ 0.25
    same = F.paired_bootstrap_ratio(z + 0.3, z + 0.3, ref, n_boot=20)
    assert same == pytest.approx((1.0, 1.0))
    with pytest.raises(ValueError, match="paired features need equal shapes"):
        F.paired_bootstrap_ratio(z, z[:10], ref)


def test_pixel_fd_needs_no_net_and_separates_real_from_blur(digits):
    held = F.real_data("digits").x[F.real_halves("digits")[1]]
    blurred = torch.nn.functional.avg_pool2d(held, 3, 1, 1)
    assert F.fd_pixels(held, "digits") < F.fd_pixels(blurred, "digits")
    with pytest.raises(ValueError, match="shape"):
        F.fd_pixels(torch.zeros(5, 1, 4, 4), "digits")
