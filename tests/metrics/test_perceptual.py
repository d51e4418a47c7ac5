"""The LPIPS-baseline distance on the shipped digits perceptual net."""

import pytest
import torch

from fewstep import data
from fewstep.distill.consistency import ConsistencyConfig, distance
from fewstep.metrics import classifier, perceptual


@pytest.fixture(scope="module")
def digits():
    return data.get("digits", "test").x[:64]


def test_zero_on_equal_images_and_grows_with_corruption(digits):
    assert torch.equal(perceptual.lpips(digits, digits), torch.zeros(len(digits)))
    g = torch.Generator().manual_seed(0)
    small = perceptual.lpips(digits, digits + 0.05 * torch.randn(digits.shape, generator=g))
    large = perceptual.lpips(digits, digits + 0.5 * torch.randn(digits.shape, generator=g))
    assert (small > 0).all() and (large > small).float().mean() > 0.95


def test_it_tells_digits_apart_more_than_pixel_jitter(digits):
    # a one-pixel shift keeps the digit; another digit does not: LPIPS ranks them so more often than L2 does
    shifted = torch.roll(digits, 1, dims=-1)
    other = digits.roll(1, dims=0)
    lp = perceptual.lpips(digits, shifted) < perceptual.lpips(digits, other)
    l2 = distance("l2", digits, shifted) < distance("l2", digits, other)
    assert lp.float().mean() > l2.float().mean()


def test_gradients_reach_the_images_not_the_net(digits):
    x = digits.clone().requires_grad_(True)
    perceptual.lpips(x, digits.flip(0)).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert all(p.grad is None for p in perceptual.net_for((1, 8, 8)).parameters())


def test_the_perceptual_net_is_not_the_fd_net():
    lp, fd = classifier.manifest("digits_perceptual")["recipe"], classifier.manifest("digits")["recipe"]
    assert lp["data"] == "digits" and (lp["seed"], lp["net"]["widths"]) != (fd["seed"], fd["net"]["widths"])


def test_unknown_shape_and_bad_batches_are_clear_errors():
    with pytest.raises(ValueError, match="no perceptual net for images of shape"):
        perceptual.lpips(torch.zeros(2, 3, 5, 5), torch.zeros(2, 3, 5, 5))
    with pytest.raises(ValueError, match="one shape"):
        perceptual.lpips(torch.zeros(2, 1, 8, 8), torch.zeros(3, 1, 8, 8))
    assert ConsistencyConfig(mode="cd", dist="lpips").dist == "lpips"
