"""Zero-shot editing: the transforms are orthogonal, the known part survives exactly, and with the exact
consistency function of a Gaussian the generated part has the right conditional law."""

from __future__ import annotations

import pytest
import torch

from fewstep.distill import GaussianConsistency
from fewstep.edit import (
    algorithm4,
    colorize,
    denoise,
    inpaint,
    interpolate,
    select_consistent,
    self_consistency,
    slerp,
    stroke,
    superres,
)
from fewstep.edit import transforms as Tr


def _cm(shape=(1, 8, 8)):
    return GaussianConsistency(torch.zeros(shape), 0.5 * torch.ones(shape), 0.002, 80.0)


@pytest.mark.parametrize("A,shape", [(Tr.identity(), (2, 1, 8, 8)), (Tr.patch_mean(2), (2, 3, 8, 8)),
                                     (Tr.patch_mean(4), (2, 1, 8, 8)), (Tr.luma(), (2, 3, 4, 4))])
def test_transforms_are_orthogonal(A, shape):
    x = torch.randn(shape, dtype=torch.float64)
    c = A.forward(x)
    assert c.numel() == x.numel()
    torch.testing.assert_close(A.inverse(c), x, rtol=0, atol=1e-12)
    torch.testing.assert_close(c.square().sum(), x.square().sum())  # an isometry


def test_patch_mean_component_is_the_low_res_pixel():
    x = torch.randn(3, 2, 8, 8, dtype=torch.float64)
    c = Tr.patch_mean(4).forward(x).reshape(3, 2, 16, 2, 2)[:, :, 0]
    torch.testing.assert_close(c / 4, torch.nn.functional.avg_pool2d(x, 4))


def test_inpainting_keeps_the_known_pixels_bit_for_bit():
    y = torch.rand(4, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    out = inpaint(_cm(), y, mask, [80.0, 1.0, 0.2], generator=torch.Generator().manual_seed(0))
    assert torch.equal(out[..., :4, :], y[..., :4, :])
    assert not torch.allclose(out[..., 4:, :], y[..., 4:, :])


def test_repeated_taus_resample_and_increasing_ones_are_refused():
    y = torch.rand(2, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    g = torch.Generator().manual_seed(0)
    once = inpaint(_cm(), y, mask, [80.0, 1.0], generator=g)
    twice = inpaint(_cm(), y, mask, [80.0, 1.0, 1.0], generator=torch.Generator().manual_seed(0))
    assert torch.equal(twice[..., :4, :], y[..., :4, :]) and not torch.equal(once, twice)
    with pytest.raises(ValueError, match="must not increase"):
        inpaint(_cm(), y, mask, [1.0, 2.0])


def test_superres_and_colorize_keep_the_known_coefficients():
    g = torch.Generator().manual_seed(0)
    low = torch.rand(3, 1, 2, 2, generator=g) * 1.6 - 0.8
    out = superres(_cm(), low, 4, [80.0, 0.5], generator=g)
    torch.testing.assert_close(torch.nn.functional.avg_pool2d(out, 4), low, rtol=0, atol=1e-6)
    gray = torch.rand(3, 1, 4, 4, generator=g) * 1.6 - 0.8
    col = colorize(_cm((3, 4, 4)), gray, [80.0], generator=g)
    w = torch.tensor([0.2989, 0.5870, 0.1140])
    torch.testing.assert_close((col * w[:, None, None]).sum(1, keepdim=True), gray * w.sum(), rtol=0, atol=1e-6)


def test_generated_part_has_the_conditional_law_of_a_gaussian():
    """Independent coordinates: the masked ones must come out N(0, 0.5^2 + eps^2)-distributed, the rest kept."""
    n = 20000
    y = torch.full((n, 1, 2, 2), 0.7)
    mask = torch.tensor([[[[1.0, 0.0], [0.0, 1.0]]]])
    out = algorithm4(_cm((1, 2, 2)), y, Tr.identity(), mask.expand_as(y), [80.0, 2.0, 0.5],
                     generator=torch.Generator().manual_seed(1), clip=None)
    gen = out[:, 0, 0, 0]
    assert abs(gen.mean().item()) < 0.02 and abs(gen.std().item() - 0.5) < 0.02
    assert torch.equal(out[:, 0, 0, 1], y[:, 0, 0, 1])


def test_denoise_stroke_interpolate_shapes_and_limits():
    cm = _cm()
    y = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(denoise(cm, y, 0.002, clip=None), y)  # boundary: f(y, eps) = y
    with pytest.raises(ValueError):
        denoise(cm, y, 500.0)
    assert stroke(cm, y, [5.0, 0.5], generator=torch.Generator().manual_seed(0)).shape == y.shape
    z0, z1 = torch.randn(2, 1, 8, 8), torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(slerp(z0, z1, 0.0), z0)
    torch.testing.assert_close(slerp(z0, z1, 1.0), z1, rtol=1e-4, atol=1e-5)
    assert interpolate(cm, z0, z1, [0.0, 0.5, 1.0]).shape == (3, 2, 1, 8, 8)


def test_editing_benchmark_reports_every_schedule():
    from fewstep.bench.editing import editing

    out = editing(_cm(), 40, repeats=2)
    kept = [k for k in out if k.startswith("inpaint_")]
    assert len(kept) == 12 and all(0 <= out[k] <= 1 for k in kept)
    assert {"superres_fd_cm_21step", "inpaint_right_21step_label_kept", "inpaint_lower_21step_x4_label_kept"} \
        <= set(out)
    assert out["superres_fd_real"] < out["superres_fd_bicubic"]


def test_colorization_benchmark_keeps_the_luma_and_reports_fd():
    from fewstep.bench.editing import colorization

    out = colorization(_cm((3, 8, 8)), 40)
    assert out["n"] == 40 and out["fd_real"] < out["fd_gray"]
    assert 0 <= out["label_kept_gray"] <= 1
    for k in ("1step", "2step", "4step", "8step", "21step"):
        assert out[f"luma_max_change_cm_{k}"] < 1e-5  # Alg. 4 keeps the luma coefficient
        assert 0 <= out[f"label_kept_cm_{k}"] <= 1 and out[f"fd_cm_{k}"] > 0


def test_self_consistency_prefers_the_edit_that_fits_the_known_part():
    # A toy CM that couples every pixel (f = the image mean everywhere): an edit whose generated half agrees with
    # the kept half (both ~ y) is reconstructed closer to y on the kept half than one whose generated half is off.
    def cm(x, sigma, cond=None):
        return x.mean((1, 2, 3), keepdim=True).expand_as(x)

    g = torch.Generator().manual_seed(0)
    y = 0.1 * torch.randn(6, 1, 8, 8, generator=g)
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 4:, :] = 1
    good, bad = y.clone(), y + 3.0 * mask
    err_good = self_consistency(cm, good, y, Tr.identity(), mask.expand_as(y), generator=g)
    err_bad = self_consistency(cm, bad, y, Tr.identity(), mask.expand_as(y), generator=g)
    assert (err_good < err_bad).all()
    mixed = torch.where(torch.arange(6)[:, None, None, None] % 2 == 0, good, bad)
    pick = select_consistent(cm, y, Tr.identity(), mask.expand_as(y), [mixed, good, bad], generator=g)
    torch.testing.assert_close(pick, good)


def test_candidates_keep_the_known_pixels_and_count_calls():
    calls = []

    class Counting(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.cm, self.sigma_min, self.sigma_max, self.shape = _cm(), 0.002, 80.0, (1, 8, 8)

        def forward(self, x, sigma, cond=None):
            calls.append(1)
            return self.cm(x, sigma, cond)

    y = torch.rand(3, 1, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., :, 4:] = 1
    out = inpaint(Counting(), y, mask, [80.0, 1.0, 0.5], generator=torch.Generator().manual_seed(0), candidates=3,
                  check_repeats=2)
    assert len(calls) == 3 * 3 + 3 * 2
    assert torch.equal(out * (1 - mask), y * (1 - mask))


def test_bad_masks_factors_and_alphas_are_refused_with_the_shapes():
    cm, y = _cm(), torch.zeros(2, 1, 8, 8)
    with pytest.raises(ValueError, match=r"mask of shape \(1, 1, 4, 4\) does not fit images of shape \(2, 1, 8, 8\)"):
        inpaint(cm, y, torch.ones(1, 1, 4, 4))
    with pytest.raises(ValueError, match="does not fit"):
        inpaint(cm, y, torch.ones(3, 1, 8, 8))  # broadcasts with y's batch of 2 only by growing it
    with pytest.raises(ValueError, match=r"only 0 \(keep\) and 1 \(generate\)"):
        inpaint(cm, y, torch.full((1, 1, 8, 8), 0.5))
    cm.shape = (1, 8, 8)  # a model that declares its sample shape (as checkpoints do)
    with pytest.raises(ValueError, match=r"upsampled by 3 give \(1, 6, 6\), but the model makes \(1, 8, 8\)"):
        superres(cm, torch.zeros(2, 1, 2, 2), 3)
    with pytest.raises(ValueError, match="positive integer"):
        superres(cm, torch.zeros(2, 1, 8, 8), 0)
    with pytest.raises(ValueError, match="alphas is empty"):
        interpolate(cm, torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8), [])
    with pytest.raises(ValueError, match="sigmas is empty"):
        algorithm4(cm, y, Tr.identity(), torch.ones_like(y), [])
