"""Classifier-free guidance wrapper: closed form on a toy denoiser, batched == two calls, eps-space equivalence."""

from __future__ import annotations

import math

import torch
from bridge_models import diffusers, tiny_unet

from fewstep.bridge.load import from_diffusers
from fewstep.guidance import cfg


class _Toy:
    """D(x, sigma, c) = x / (1 + sigma^2) + c (c a scalar tensor per sample, or 0 for None)."""

    sigma_min, sigma_max = 0.01, 10.0

    def __call__(self, x, sigma, cond=None):
        s = torch.as_tensor(sigma, dtype=x.dtype).reshape(-1, *[1] * (x.ndim - 1))
        c = 0 if cond is None else cond.reshape(-1, *[1] * (x.ndim - 1))
        return x / (1 + s**2) + c


def test_cfg_closed_form():
    x, c, u, w = torch.randn(3, 4), torch.tensor([1.0, 2.0, 3.0]), torch.tensor([0.5]), 4.0
    g = cfg(_Toy(), w, uncond=u)
    base = x / (1 + 0.7**2)
    torch.testing.assert_close(g(x, 0.7, c), base + u + w * (c[:, None] - u))
    assert g.sigma_min == 0.01 and g.sigma_max == 10.0
    torch.testing.assert_close(cfg(_Toy(), 1.0, uncond=u)(x, 0.7, c), base + c[:, None])
    torch.testing.assert_close(cfg(_Toy(), w, None)(x, 0.7, c), base + w * c[:, None])  # two calls (None + tensor)


def test_cfg_batched_equals_unbatched_and_eps_guidance():
    unet = tiny_unet(num_class_embeds=4)
    den = from_diffusers(unet, diffusers.DDPMScheduler(), dtype=torch.float64)
    x, sigma, w = torch.randn(2, 3, 8, 8, dtype=torch.float64) * 2, 1.5, 3.0
    labels, null = torch.tensor([1, 2]), torch.tensor([0])
    a = cfg(den, w, null, batched=True)(x, sigma, labels)
    b = cfg(den, w, null, batched=False)(x, sigma, labels.clone())
    torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9)
    # diffusers pipelines guide eps: eps_w = eps_u + w (eps_c - eps_u); x0 = x - sigma eps_w (VE coordinates)
    t = torch.full((2,), float(den.timestep(sigma)), dtype=torch.float64)
    x_vp = x / math.sqrt(1 + sigma**2)
    e_u, e_c = unet(x_vp, t, class_labels=null.expand(2)).sample, unet(x_vp, t, class_labels=labels).sample
    torch.testing.assert_close(a, x - sigma * (e_u + w * (e_c - e_u)), rtol=1e-7, atol=1e-7)
