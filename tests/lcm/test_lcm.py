"""Latent consistency models on tiny settings: the w-embedding starts as the teacher, per-sample CFG equals the CFG
wrapper, the Cauchy distance's closed form, guided distillation (full and LoRA) trains, resumes exactly, saves a
model kind fs.generate samples, and the LoRA adapter loads into a plain copy of the teacher's UNet with peft."""

from __future__ import annotations

import dataclasses
import json
import math
import sys

import pytest
import torch

import fewstep as fs
from fewstep.data.sets import ImageData
from fewstep.distill import lcm
from fewstep.distill.config import LCMConfig
from fewstep.distill.distances import distance
from fewstep.guidance import CFG, InputCFG
from fewstep.io import build_denoiser
from fewstep.latent.config import AEConfig, LDMConfig
from fewstep.latent.stack import load_stack
from fewstep.latent.teacher import train_teacher
from fewstep.latent.train_ae import train_autoencoder
from fewstep.nets.guidance_embed import GuidanceEmbedded, scale_embedding
from fewstep.train.config import TrainConfig

pytest.importorskip("diffusers")
peft = pytest.importorskip("peft")

AE = AEConfig(channels="8,8,16", steps=3, batch=16, warmup=1, ckpt_every=3)
LDM = LDMConfig(unet_channels="16,32", attention_head_dim=8)
RUN = TrainConfig(steps=3, batch=16, warmup=1, ckpt_every=3, label_dropout=0.5, progress=False)
TINY = LCMConfig(N=12, skip=2, w_min=1.0, w_max=3.0)
STEPS = TrainConfig(steps=4, batch=8, lr=1e-3, warmup=1, ckpt_every=2, progress=False)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory, blob_images):
    root = tmp_path_factory.mktemp("lcm")
    data = blob_images(32)
    train_autoencoder(data, AE, root / "ae", progress=False)
    train_teacher(root / "ae", data, LDM, RUN, root / "ldm")
    return root, data, load_stack(root / "ldm")


def test_w_embedding_starts_as_the_inner_network_and_then_depends_on_w(teacher):
    _, _, t = teacher
    inner = t.den.net
    net = GuidanceEmbedded(inner, 32)
    x, c = torch.randn(4, 4, 8, 8), torch.full((4,), 0.3)
    y = torch.tensor([0, 1, 2, 0])
    for w in (1.0, 3.5):
        assert torch.equal(net(x, c, {"y": y, "w": torch.full((4,), w)}), inner(x, c, y))
    torch.nn.init.normal_(net.proj.weight)
    a, b = net(x, c, {"y": y, "w": torch.full((4,), 1.0)}), net(x, c, {"y": y, "w": torch.full((4,), 3.0)})
    assert (a - b).abs().max() > 1e-4
    assert torch.equal(net(x, c, y), a)  # no w is w = 1
    e = scale_embedding(torch.tensor([1.0, 2.0]), 8, 1.0)
    assert torch.allclose(e[0], torch.tensor([0.0] * 4 + [1.0] * 4))  # w = 1: sin 0, cos 0


def test_input_cfg_equals_the_cfg_wrapper_per_sample(teacher):
    _, _, t = teacher
    x, s = torch.randn(6, 4, 8, 8), torch.full((6,), 2.0)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.tensor([1.0, 1.5, 2.0, 3.0, 4.0, 2.0])
    got = InputCFG(t, null=3)(x, s, {"y": y, "w": w})
    want = torch.stack([CFG(t, float(w[i]))(x[i:i + 1], s[i:i + 1], y[i:i + 1])[0] for i in range(6)])
    assert torch.allclose(got, want, atol=1e-5)


def test_cauchy_distance_closed_form():
    a, b = torch.zeros(2, 4), torch.tensor([[3.0, 4.0, 0, 0], [0, 0, 0, 0]])
    got = distance("cauchy", a, b, c=2.0)
    assert torch.allclose(got, torch.tensor([0.5 * 2.0 * math.log(1 + 25 / 4), 0.0], dtype=torch.float64))
    small = torch.full((1, 4), 1e-4)
    assert torch.allclose(distance("cauchy", small, 0 * small, 0.5), distance("pseudo_huber", small, 0 * small, 0.5),
                          rtol=1e-3)


def test_config_refuses_bad_ranges():
    with pytest.raises(ValueError, match="w_min <= w_max"):
        LCMConfig(w_min=3.0, w_max=2.0)
    with pytest.raises(ValueError, match="skip"):
        LCMConfig(N=10, skip=9)
    with pytest.raises(ValueError, match="one guidance scale"):
        LCMConfig(lora_rank=4, w_min=1.0, w_max=2.0)


def test_student_starts_as_the_teacher(teacher):
    _, _, t = teacher
    mc = lcm.student_config(t, TINY, "ae")
    st = build_denoiser(mc)
    st.load_state_dict(lcm.student_init(t, mc))
    x, y = torch.randn(4, 4, 8, 8) * 10, torch.tensor([0, 1, 2, 1])
    sigma = torch.full((4,), 10.0)  # far from sigma_min the boundary preconditioning is EDM's to 1e-5
    assert torch.allclose(st(x, sigma, {"y": y, "w": torch.full((4,), 2.5)}), t(x, sigma, y), atol=1e-3)


def test_distill_trains_resumes_exactly_and_generates(teacher, tmp_path):
    root, data, t = teacher
    (tmp_path / "ae").symlink_to(root / "ldm" / "vae")
    out = tmp_path / "lcm.safetensors"
    lcm.distill_lcm(TINY, STEPS, data, t, "ae", out=out)
    whole = fs.zoo.load(str(out))
    half = tmp_path / "half.safetensors"
    lcm.distill_lcm(TINY, dataclasses.replace(STEPS, steps=2), data, t, "ae", out=half)
    lcm.distill_lcm(TINY, STEPS, data, t, "ae", out=half, resume=True)
    resumed = fs.zoo.load(str(half))
    for (k, a), b in zip(whole.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    assert fs.kinds.model_kind(whole).name == "latent_consistency"
    assert any((p != 0).any() for n, p in whole.named_parameters() if "proj" in n)  # the w-projection learned
    x1 = fs.generate(whole, 6, nfe=2, labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance=1.0)
    x3 = fs.generate(whole, 6, nfe=2, labels=torch.tensor([0, 1, 2, 0, 1, 2]), guidance=3.0)
    assert x1.shape == (6, 1, 28, 28) and x1.abs().max() <= 1
    assert (x1 - x3).abs().max() > 0  # guidance is an input of the student
    assert torch.allclose(fs.generate(whole, 4, nfe=2, labels=1, guidance=2.0, batch=1),
                          fs.generate(whole, 4, nfe=2, labels=1, guidance=2.0, batch=4), atol=1e-4)


def test_lora_trains_only_adapters_and_loads_into_the_teachers_unet_with_peft(teacher, tmp_path):
    from fewstep.distill import lcm_lora
    from fewstep.nets.lora import ADAPTER_CONFIG, ADAPTER_WEIGHTS

    root, data, t = teacher
    (tmp_path / "ae").symlink_to(root / "ldm" / "vae")
    cfg = dataclasses.replace(TINY, w_min=2.0, w_max=2.0, lora_rank=2)
    out = tmp_path / "lora.safetensors"
    lcm.distill_lcm(cfg, STEPS, data, t, "ae", out=out)
    st = fs.zoo.load(str(out))
    base = dict(lcm.unet_of(t).state_dict())
    trained = {k.removeprefix("den.net.inner.unet."): v for k, v in st.state_dict().items()
               if k.startswith("den.net.inner.unet.")}
    assert trained
    for k, v in trained.items():
        plain = k.replace(".base_layer.", ".")
        if "lora_" not in k:
            assert torch.allclose(v, base[plain].float(), rtol=0, atol=1e-6), k  # the base weights stay (the EMA's
            # rounding of a constant is all that moves them)
    assert any((v != 0).any() for k, v in trained.items() if "lora_B" in k)  # B left its zero init
    folder = lcm_lora.export(out, tmp_path / "adapter", base=str(root / "ldm"))
    assert (folder / ADAPTER_CONFIG).is_file() and (folder / ADAPTER_WEIGHTS).is_file()
    # peft alone, on a plain copy of the teacher's UNet: the adapted UNet equals the student's
    from diffusers import UNet2DModel
    from peft import LoraConfig, inject_adapter_in_model, set_peft_model_state_dict
    from safetensors.torch import load_file

    unet = UNet2DModel.from_pretrained(str(root / "ldm" / "unet")).float()
    conf = LoraConfig(**{k: v for k, v in json.loads((folder / ADAPTER_CONFIG).read_text()).items()
                         if k in LoraConfig.__dataclass_fields__})
    inject_adapter_in_model(conf, unet)
    set_peft_model_state_dict(unet, {k: v.float() for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()})
    x, c, y = torch.randn(3, 4, 8, 8), torch.full((3,), 0.2), torch.tensor([0, 1, 2])
    want = st.den.net.inner.unet(x, c, class_labels=y).sample
    assert torch.allclose(unet(x, c, class_labels=y).sample, want, atol=2e-3)  # fp16 storage of the adapter
    loaded = fs.zoo.load(str(folder))
    assert fs.kinds.model_kind(loaded).name == "lcm_lora"
    xs = fs.generate(loaded, 3, nfe=2, labels=torch.tensor([0, 1, 2]), guidance=2.0)
    assert xs.shape == (3, 1, 28, 28)
    with pytest.raises(ValueError, match="distilled at guidance 2"):
        fs.generate(loaded, 3, nfe=2, labels=0, guidance=3.0)


@pytest.mark.parametrize("argv, where", [
    (["--teacher", "digits-edm"], "latent teacher"),
    (["--w-min", "3", "--w-max", "2"], "w_min <= w_max"),
    (["--lora-rank", "4"], "one guidance scale"),
])
def test_cli_bad_input_is_one_line(argv, where, tmp_path, capsys, monkeypatch):
    from fewstep.cli.main import main

    monkeypatch.setattr(sys, "argv", ["fewstep", "distill", "lcm", "--out", str(tmp_path / "x.safetensors"),
                                      "--steps", "1", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and err[-1].startswith("error:") and where in err[-1], err
    assert not (tmp_path / "x.safetensors").exists()


def test_style_lora_merged_into_the_teacher_equals_the_adapted_model(teacher, tmp_path):
    from fewstep.bench.lcm import _style_model, ink, thicken
    from fewstep.distill import lcm_lora

    root, data, t = teacher
    out = tmp_path / "style.safetensors"
    thick = ImageData(data.name, thicken(data.x), data.y, data.num_classes)
    lcm_lora.finetune_style(t, thick, 2, "attn+conv", STEPS, "unused", out)
    style = _style_model(out, t)
    torch.nn.init.normal_(next(p for n, p in style.named_parameters() if "lora_B" in n), std=0.1)  # a visible delta
    tuned = lcm_lora.with_adapter_merged(t, style)
    x, s, y = torch.randn(3, 4, 8, 8), torch.full((3,), 1.5), torch.tensor([0, 1, 2])
    assert torch.allclose(tuned(x, s, y), style(x, s, y), atol=1e-4)  # W + BA == the adapted layer
    assert (tuned(x, s, y) - t(x, s, y)).abs().max() > 1e-3
    assert ink(thick.x) > ink(data.x)
