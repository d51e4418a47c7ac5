"""The latent stack on tiny settings: the KL autoencoder (diffusers AutoencoderKL), the class-conditional latent
teacher (diffusers UNet2DModel) written as one diffusers folder, and fewstep's samples on it == diffusers' EDM
schedulers on the same noise."""

from __future__ import annotations

import dataclasses
import sys

import pytest
import torch
import torch.nn.functional as F

import fewstep as fs
from fewstep.bench.latent import edm_diffusers_loop
from fewstep.cli.main import main
from fewstep.latent import train_ae
from fewstep.latent.autoencoder import KLAutoencoder
from fewstep.latent.config import AEConfig, LDMConfig
from fewstep.latent.stack import encode_dataset
from fewstep.latent.teacher import train_teacher
from fewstep.latent.train_ae import train_autoencoder
from fewstep.solvers.constructors import get as plan_get
from fewstep.train.config import TrainConfig

diffusers = pytest.importorskip("diffusers")

AE = AEConfig(channels="8,8,16", steps=4, batch=16, warmup=1, ckpt_every=2)
LDM = LDMConfig(unet_channels="16,32", attention_head_dim=8)
RUN = TrainConfig(steps=3, batch=16, warmup=1, ckpt_every=3, label_dropout=0.5, progress=False)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, blob_images):
    root = tmp_path_factory.mktemp("latent")
    data = blob_images(48)
    ae = train_autoencoder(data, AE, root / "ae", progress=False)
    den = train_teacher(root / "ae", data, LDM, RUN, root / "ldm")
    return root, data, ae, den


def test_autoencoder_shapes_standardisation_and_diffusers_view(stack):
    root, data, ae, _ = stack
    z = ae.encode(data.x)
    assert z.shape == (len(data), 4, 8, 8) and ae.latent_shape == (4, 8, 8)
    # standardised on its own training set: mean 0, std 1 (the stored shift/scale of diffusers' config)
    assert abs(z.double().mean().item()) < 1e-4 and abs(z.double().std().item() - 1) < 1e-3
    x = ae.decode(z)
    assert x.shape == data.x.shape and x.min() >= -1 and x.max() <= 1
    vae = diffusers.AutoencoderKL.from_pretrained(str(root / "ae"))  # a diffusers user's own class
    raw = vae.encode(F.pad(data.x, (2, 2, 2, 2), value=-1.0)).latent_dist.mean
    torch.testing.assert_close((raw - vae.config.shift_factor) * vae.config.scaling_factor, z, rtol=1e-5, atol=1e-5)
    loaded = fs.zoo.load(root / "ae")
    assert isinstance(loaded, KLAutoencoder) and fs.kinds.model_kind(loaded).name == "autoencoder"
    with pytest.raises(ValueError, match="does not generate images"):
        fs.generate(loaded, 2)


def test_autoencoder_resume_after_a_kill_is_bitwise(tmp_path, monkeypatch, blob_images):
    data = blob_images(32)
    cfg = dataclasses.replace(AE, steps=4, ckpt_every=2)
    full = train_autoencoder(data, cfg, tmp_path / "full", progress=False)
    calls, real = [0], train_ae.ae_loss

    def dies_at_step_3(*a, **k):
        calls[0] += 1
        if calls[0] == 4:
            raise KeyboardInterrupt  # killed during step 3: the step-2 checkpoint survives
        return real(*a, **k)
    monkeypatch.setattr(train_ae, "ae_loss", dies_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        train_autoencoder(data, cfg, tmp_path / "part", progress=False)
    monkeypatch.setattr(train_ae, "ae_loss", real)
    resumed = train_autoencoder(data, cfg, tmp_path / "part", resume=True, progress=False)
    for (k, a), b in zip(full.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    with pytest.raises(fs.errors.CheckpointError, match="other settings"):
        train_autoencoder(data, dataclasses.replace(cfg, kl_weight=1e-3), tmp_path / "part", resume=True,
                          progress=False)


def test_stack_folder_is_a_latent_denoiser_equal_to_the_trained_one(stack, tmp_path):
    root, data, ae, den = stack
    m = fs.from_diffusers(root / "ldm")
    assert isinstance(m, fs.latent.LatentDenoiser) and fs.kinds.model_kind(m).name == "latent_denoiser"
    assert tuple(m.shape) == (4, 8, 8) and fs.zoo.lookup.num_classes(m) == 3
    z = torch.randn(4, 4, 8, 8, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([0, 1, 2, 3])  # 3 is the null label
    for s in (0.01, 1.0, 40.0):
        ref = den(z * s, torch.full((4,), s), y)
        # the folder holds float16 weights: agreement to half-precision rounding
        torch.testing.assert_close(m(z * s, torch.full((4,), s), y), ref, rtol=0, atol=2e-2 * (1 + s))
    torch.testing.assert_close(m(z, 1.0, None), m(z, 1.0, torch.full((4,), 3)))  # cond None = the null label
    x = m.decode(z)
    assert x.shape == (4, 1, 28, 28)


def test_generate_decodes_with_labels_guidance_and_batch_independence(stack):
    root = stack[0]
    a = fs.generate(root / "ldm", 6, nfe=4, plan="euler", labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance=2.0,
                    batch=6)
    b = fs.generate(root / "ldm", 6, nfe=4, plan="euler", labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance=2.0,
                    batch=4)
    assert a.shape == (6, 1, 28, 28) and a.min() >= -1 and a.max() <= 1
    torch.testing.assert_close(a, b, rtol=0, atol=1e-4)
    c = fs.generate(root / "ldm", 6, nfe=4, plan="euler", labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance=1.0)
    assert (a - c).abs().max() > 1e-3  # guidance changes the samples


@pytest.mark.parametrize("g", [1.0, 2.0])
@pytest.mark.parametrize("name", ["euler", "dpm_solver_pp_2m"])
def test_fewstep_plans_equal_diffusers_edm_schedulers(stack, name, g):
    root = stack[0]
    m = fs.from_diffusers(root / "ldm")
    cls = {"euler": diffusers.EDMEulerScheduler, "dpm_solver_pp_2m": diffusers.EDMDPMSolverMultistepScheduler}[name]
    sched = cls.from_pretrained(str(root / "ldm" / "scheduler"))
    sched.set_timesteps(6)
    sig = sched.sigmas.double()
    plan = plan_get(name, nfe=6, sigma_min=float(sig[-2]), sigma_max=float(sig[0]), grid="karras")
    torch.testing.assert_close(plan.sigmas, sig, rtol=1e-6, atol=1e-7)  # the same Karras grid (rho 7), ending in 0
    labels = torch.tensor([0, 1, 2])
    n = torch.randn(3, 4, 8, 8, generator=torch.Generator().manual_seed(2))
    want = edm_diffusers_loop(sched, m, n * sig[0].float(), labels, g, null=3)
    den = m if g == 1.0 else fs.guidance.CFG(m, g)
    got = fs.sample(den, n * sig[0].float(), plan, cond=labels)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)


def test_fewstep_scheduler_runs_a_plan_on_the_latent_unet(stack):
    root = stack[0]
    m = fs.from_diffusers(root / "ldm")
    plan = plan_get("dpm_solver_pp_2m", nfe=5, sigma_min=m.sigma_min, sigma_max=m.sigma_max)
    sched = fs.FewStepScheduler.from_plan(plan, diffusers.EDMEulerScheduler.from_pretrained(
        str(root / "ldm" / "scheduler")))
    sched.set_timesteps(plan.nfe)
    labels = torch.tensor([0, 2])
    n = torch.randn(2, 4, 8, 8, generator=torch.Generator().manual_seed(3))
    x = n * sched.init_noise_sigma
    for t in sched.timesteps:
        out = m.den.unet(sched.scale_model_input(x, t), t, class_labels=labels).sample
        x = sched.step(out, t, x).prev_sample
    torch.testing.assert_close(x, fs.sample(m, n * float(plan.sigmas[0]), plan, cond=labels), rtol=1e-4, atol=1e-4)


def test_encode_dataset_keeps_labels(stack):
    _, data, ae, _ = stack
    lat = encode_dataset(ae, data)
    assert lat.x.shape == (len(data), 4, 8, 8) and torch.equal(lat.y, data.y) and lat.num_classes == 3


@pytest.mark.parametrize("argv, where", [
    (["latent", "train-ae", "--out", "{full}"], "--overwrite"),
    (["latent", "train-ae", "--out", "{file}"], "--out"),
    (["latent", "train-ae", "--out", "{new}", "--channels", "a,b"], "--channels"),
    (["latent", "train-ldm", "--ae", "{new}", "--out", "{new}"], "--ae"),
])
def test_latent_cli_bad_input(argv, where, tmp_path, capsys, monkeypatch):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "config.json").write_text("{}")
    (tmp_path / "file").write_text("x")
    paths = {"full": tmp_path / "full", "file": tmp_path / "file", "new": tmp_path / "new"}
    argv = [a.format(**paths) for a in argv]
    monkeypatch.setattr(sys, "argv", ["fewstep", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error:") and where in err[0], err
