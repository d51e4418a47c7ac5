"""fs.generate: every zoo model and a diffusers folder to images in [-1, 1] at the data's size; sample i depends
only on (seed, i); labels and guidance; latent denoisers are decoded; model kinds build the right object."""

import pytest
import torch
from torch import nn

import fewstep as fs
from fewstep import io, kinds
from fewstep.errors import CheckpointError
from fewstep.guidance import CFG
from fewstep.zoo.generate import draw

ZOO = {"digits-edm": (1, 8, 8), "digits-cd": (1, 8, 8), "digits-ict": (1, 8, 8), "digits-color-edm": (3, 8, 8),
       "digits-color-cd": (3, 8, 8)}
pytestmark = pytest.mark.skipif(not set(ZOO) <= set(fs.zoo.names()), reason="zoo weights not shipped")


def _check_images(x, n, shape):
    assert x.shape == (n, *shape) and x.device.type == "cpu" and x.dtype == torch.float32
    assert torch.isfinite(x).all() and x.min() >= -1 and x.max() <= 1


@pytest.mark.parametrize("name", sorted(ZOO))
def test_every_zoo_model_gives_images_with_its_default_sampler(name):
    x = fs.generate(name, 6)
    _check_images(x, 6, ZOO[name])
    assert x.std() > 0.1  # not a constant image


@pytest.mark.parametrize("plan", ["heun", "ddim", "unipc_bh2", "searched"])
def test_teacher_with_any_plan_equals_the_engine_on_seeded_noise(plan):
    den = fs.zoo.load("digits-edm")
    d = draw("digits-edm", 5, nfe=5, plan=plan, seed=3)
    p = fs.zoo.lookup.resolve_plan(plan, den, 5, model="digits-edm")
    ref = fs.sample(den, fs.seed.noise(5, 3, (1, 8, 8), float(p.sigmas[0])), p).clamp(-1, 1)
    assert d.nfe == 5 and torch.equal(d.x, ref)


def test_plan_objects_and_files(tmp_path):
    plan = fs.plans.get("dpm_solver_pp_3m", nfe=4)
    f = tmp_path / "p.json"
    f.write_text(plan.to_json())
    a, b = fs.generate("digits-edm", 4, plan=plan), fs.generate("digits-edm", 4, plan=str(f))
    assert torch.equal(a, b)
    with pytest.raises(ValueError, match="NFE"):
        fs.generate("digits-edm", 4, plan=plan, nfe=6)


@pytest.mark.parametrize("name,plan", [("digits-edm", "dpm_solver_pp_2m"), ("digits-cd", None)])
def test_sample_i_depends_only_on_seed_and_i(name, plan):
    kw = {"nfe": 2, "plan": plan, "seed": 7}
    whole = fs.generate(name, 12, batch=12, **kw)
    torch.testing.assert_close(fs.generate(name, 12, batch=5, **kw), whole, rtol=0, atol=1e-4)
    torch.testing.assert_close(fs.generate(name, 5, **kw), whole[:5], rtol=0, atol=1e-4)
    assert not torch.allclose(fs.generate(name, 5, **{**kw, "seed": 8}), whole[:5], atol=1e-2)


def test_students_use_their_recorded_sigmas():
    cm = fs.zoo.load("digits-cd")
    one = draw(cm, 4, seed=1)
    assert one.nfe == 1 and one.sampler["sigmas"] == [cm.sigma_max]
    ref = cm(fs.seed.noise(4, 1, (1, 8, 8), cm.sigma_max), cm.sigma_max).clamp(-1, 1)
    assert torch.equal(one.x, ref)
    two = draw(cm, 4, nfe=2)
    assert two.sampler["sigmas"] == fs.zoo.manifest("digits-cd")["sampler"]["sigmas"]["2"]
    three = draw(cm, 4, nfe=3)  # no recorded sigmas: geometric between T and eps
    assert len(three.sampler["sigmas"]) == 3 and three.sampler["sigmas"][0] == cm.sigma_max
    assert draw(cm, 2, plan=[80.0, 0.5]).sampler["sigmas"] == [80.0, 0.5]
    with pytest.raises(ValueError, match="own sigmas"):
        fs.generate(cm, 2, plan="heun")


def test_labels_steer_the_class_and_guidance_is_the_cfg_wrapper():
    den = fs.zoo.load("digits-edm")
    y = torch.arange(40) % 10
    x = fs.generate(den, 40, nfe=10, labels=y)
    assert fs.metrics.confidence(x, "digits", labels=y)["accuracy"] > 0.8
    x3 = fs.generate(den, 40, nfe=10, labels=3)
    assert fs.metrics.confidence(x3, "digits", labels=torch.full((40,), 3))["accuracy"] > 0.8
    g = fs.generate(den, 6, nfe=6, plan="ddim", labels=y[:6], guidance=2.5)
    plan = fs.plans.get("ddim", nfe=6, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    ref = fs.sample(CFG(den, 2.5), fs.seed.noise(6, 0, (1, 8, 8), 80.0), plan, cond=y[:6]).clamp(-1, 1)
    assert torch.equal(g, ref)
    assert torch.equal(fs.generate(den, 6, nfe=6, plan="ddim", labels=y[:6], guidance=1.0),
                       fs.generate(den, 6, nfe=6, plan="ddim", labels=y[:6]))


@pytest.mark.parametrize("kwargs,match", [
    ({"model": "digits-edm", "guidance": 2.0}, "give labels"),
    ({"model": "digits-edm", "labels": 10}, r"\[0, 9\]"),
    ({"model": "digits-edm", "labels": torch.zeros(3, dtype=torch.long)}, "one label per sample"),
    ({"model": "digits-edm", "labels": 1, "guidance": float("nan")}, "finite"),
    ({"model": "digits-cd", "labels": 1}, "label dropout 1"),
    ({"model": "digits-color-edm", "labels": 1}, r"\[0, -1\]|unconditional|classes"),
    ({"model": "digits-edm", "batch": 0}, "positive"),
    ({"model": "no-such-model"}, "unknown model"),
    ({"model": ""}, "empty"),
])
def test_bad_input_gets_a_clear_error(kwargs, match):
    kwargs = {"n": 4, **kwargs}
    with pytest.raises((ValueError, KeyError)) as e:
        fs.generate(**kwargs)
    assert e.match(match)


def test_a_callers_model_is_not_modified():
    den = fs.zoo.load("digits-edm")
    before = {k: v.clone() for k, v in den.state_dict().items()}
    fs.generate(den, 2, nfe=2, dtype=torch.float64)
    assert all(v.dtype == torch.float32 and torch.equal(v, before[k]) for k, v in den.state_dict().items())


def test_half_precision_networks_stay_close_to_float32():
    x32 = fs.generate("digits-edm", 8, nfe=4)
    x16 = fs.generate("digits-edm", 8, nfe=4, dtype=torch.bfloat16)
    assert x16.dtype == torch.float32 and (x16 - x32).abs().mean() < 0.02  # tests/core/test_dtype.py's bound


def test_labels_declared_as_a_condition_count_as_classes():
    from fewstep.zoo.lookup import num_classes

    den = fs.zoo.load("digits-edm")
    den.config = {**den.config, "net": {"class": "unet", "kwargs": {"conds": {"y": {"kind": "label",
                                                                                  "num_classes": 7}}}}}
    assert num_classes(den) == 7 and num_classes(fs.zoo.load("digits-color-edm")) == 0


def test_diffusers_folder(tmp_path):
    diffusers = pytest.importorskip("diffusers")
    torch.manual_seed(0)
    unet = diffusers.UNet2DModel(sample_size=8, in_channels=3, out_channels=3, layers_per_block=1,
                                 block_out_channels=(8, 16), down_block_types=("DownBlock2D", "DownBlock2D"),
                                 up_block_types=("UpBlock2D", "UpBlock2D"), norm_num_groups=4)
    diffusers.DDPMPipeline(unet=unet, scheduler=diffusers.DDPMScheduler()).save_pretrained(tmp_path / "pipe")
    x = fs.generate(str(tmp_path / "pipe"), 3, plan="ddim", nfe=3)
    _check_images(x, 3, (3, 8, 8))
    den = fs.from_diffusers(str(tmp_path / "pipe"))
    torch.testing.assert_close(fs.generate(den, 3, plan="ddim", nfe=3), x, rtol=0, atol=1e-6)


class ToyAutoencoder(nn.Module):
    """x [B, 1, 4, 4] <-> z [B, 4, 2, 2] by pixel (un)shuffle, scaled: an exact, invertible 'autoencoder'."""

    def __init__(self, scale: float = 2.0) -> None:
        super().__init__()
        self.register_buffer("scale", torch.tensor(scale))

    def encode(self, x):
        return nn.functional.pixel_unshuffle(x, 2) * self.scale

    def decode(self, z):
        return nn.functional.pixel_shuffle(z / self.scale, 2)


@pytest.fixture
def toy_kind():
    kinds.register(kinds.Kind("toy_ae", lambda config, state, base: ToyAutoencoder(config["scale"]), None))
    yield
    kinds.KINDS.pop("toy_ae")


def test_latent_denoiser_samples_latents_and_decodes(tmp_path, toy_kind):
    io.save_model(tmp_path / "ae.safetensors", ToyAutoencoder(3.0), {"kind": "toy_ae", "scale": 3.0})
    config = {"kind": "latent_denoiser", "autoencoder": "ae.safetensors", "shape": [4, 2, 2],
              "net": {"class": "unet", "kwargs": {"in_channels": 4, "channels": 8, "channel_mult": [1],
                                                  "num_blocks": 1}},
              "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0}
    torch.manual_seed(0)
    inner = io.build_denoiser({**config, "kind": "denoiser"})
    for p in inner.parameters():  # an initialised network's output conv is zero: give it an output
        nn.init.normal_(p, std=0.1)
    io.save_model(tmp_path / "ldm.safetensors", inner, config)
    ldm = fs.zoo.load(str(tmp_path / "ldm.safetensors"))
    assert isinstance(ldm, fs.latent.LatentDenoiser) and isinstance(ldm.autoencoder, ToyAutoencoder)
    assert ldm.shape == (4, 2, 2) and float(ldm.autoencoder.scale) == 3.0
    d = draw(ldm, 5, plan="ddim", nfe=3, clamp=False)
    assert d.x.shape == (5, 1, 4, 4)  # pixels, not latents
    plan = fs.plans.get("ddim", nfe=3)
    z = fs.sample(inner, fs.seed.noise(5, 0, (4, 2, 2), 80.0), plan)
    torch.testing.assert_close(d.x, ldm.decode(z), rtol=0, atol=1e-6)
    with pytest.raises(ValueError, match="does not generate"):
        fs.generate(str(tmp_path / "ae.safetensors"), 2)


def test_kinds_name_the_object_and_reject_unknown_ones(tmp_path):
    assert kinds.kind_of(fs.zoo.load("digits-edm").config) == "denoiser"
    assert kinds.kind_of(fs.zoo.load("digits-cd").config) == "consistency"
    assert kinds.model_kind(fs.zoo.load("digits-ict")).sampler == "renoise"
    assert kinds.model_kind(fs.analytic.GaussianMixture(torch.zeros(1, 2), torch.ones(1), torch.ones(1))
                            ).sampler == "plan"
    io.save_model(tmp_path / "x.safetensors", nn.Linear(1, 1), {"kind": "hologram"})
    with pytest.raises(CheckpointError, match="unknown model kind 'hologram'"):
        fs.zoo.load(str(tmp_path / "x.safetensors"))
    with pytest.raises(CheckpointError, match="autoencoder"):
        kinds.build({"kind": "latent_denoiser", "net": {}, "precond": {}, "sigma_min": 0.002, "sigma_max": 80.0})
