"""The shipped latent stack: mnist-ae and mnist-ldm load as fewstep objects and as diffusers parts, and
fs.generate gives recognisable digits of the asked classes."""

from __future__ import annotations

import pytest
import torch

import fewstep as fs
from fewstep.bench.latent import accuracy

diffusers = pytest.importorskip("diffusers")


def test_mnist_ae_round_trip_keeps_the_digit():
    ae = fs.zoo.load("mnist-ae")
    assert isinstance(ae, fs.latent.KLAutoencoder) and fs.kinds.model_kind(ae).name == "autoencoder"
    test = fs.data.get("mnist5k", "test")
    idx = torch.arange(0, len(test), 10)  # 100 held-out digits of every class
    x, y = test.x[idx], test.y[idx]
    z = ae.encode(x)
    assert z.shape == (len(x), 4, 8, 8)
    r = ae.decode(z)
    assert r.shape == x.shape and accuracy(r, y, "mnist5k") >= accuracy(x, y, "mnist5k") - 0.05


def test_mnist_ldm_generates_the_asked_classes():
    den = fs.zoo.load("mnist-ldm")
    assert isinstance(den, fs.latent.LatentDenoiser) and isinstance(den.autoencoder, fs.latent.KLAutoencoder)
    y = torch.arange(40) % 10
    x = fs.generate("mnist-ldm", 40, labels=y, guidance=2.0, nfe=8, plan="dpm_solver_pp_2m")
    assert x.shape == (40, 1, 28, 28) and x.min() >= -1 and x.max() <= 1
    assert accuracy(x, y, "mnist5k") >= 0.85


def test_mnist_ldm_folder_is_read_by_diffusers_classes():
    root = fs.zoo.path("mnist-ldm")
    unet = diffusers.UNet2DModel.from_pretrained(str(root / "unet"))
    vae = diffusers.AutoencoderKL.from_pretrained(str(root / "vae"))
    sched = diffusers.EDMEulerScheduler.from_pretrained(str(root / "scheduler"))
    assert unet.config.num_class_embeds == 11 and vae.config.latent_channels == 4
    assert sched.config.sigma_data == 1.0 and unet.config.sample_size == 8
