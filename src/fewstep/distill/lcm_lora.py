"""LCM-LoRA as an acceleration vector (Luo et al. 2023, "LCM-LoRA: A Universal Stable-Diffusion Acceleration
Module", Sec. 3): the adapters distilled on one teacher, saved in peft's format beside a `fewstep.json` naming the
base teacher, and applied to any UNet of the same architecture (a teacher fine-tuned on a sub-style) without
distilling again; `merge` adds a second (style) LoRA's update, Eq. 2's tau' = lambda_1 tau_LCM + lambda_2 tau_style.
Registers the model kind "lcm_lora" (a folder: adapter + fewstep.json)."""

from __future__ import annotations

import copy
import dataclasses
import json
from pathlib import Path
from typing import Any

from torch import nn

from ..data.sets import ImageData
from ..kinds import Kind, register
from ..kinds import load as load_checkpoint
from ..latent.denoiser import LatentDenoiser
from ..latent.teacher import LOSS_KWARGS
from ..nets.diffusers_unet import UNetNet
from ..nets.lora import LoRANet, load_adapter, merged_state, save_adapter
from ..precond import Preconditioned, consistency
from ..train.loop import train
from ..zoo.lookup import resolve
from .config import LCMConfig
from .lcm import latents, null_label, student_config, student_init, unet_of

META = "fewstep.json"


def export(student: str | Path, folder: str | Path, base: str) -> Path:
    """Write the LoRA student saved by `fewstep distill lcm --lora-rank r` as a peft adapter folder + fewstep.json
    (kind lcm_lora, `base`: the teacher, a zoo name or a path relative to the folder)."""
    st = load_checkpoint(student)
    net = st.den.net
    if not isinstance(net, LoRANet):
        raise TypeError(f"{student} is not an LCM-LoRA student (its network is {type(net).__name__})")
    folder = save_adapter(net.inner.unet, net.lora, folder)
    c = st.config
    pc = c["precond"]["kwargs"]
    meta = {"kind": "lcm_lora", "base": base, "guidance": net.guidance, "sigma_min": c["sigma_min"],
            "sigma_max": c["sigma_max"], "sigma_data": pc["sigma_data"], "num_classes": c.get("num_classes"),
            "data": c.get("data"), "distill": c.get("distill")}
    (folder / META).write_text(json.dumps(meta, indent=1, sort_keys=True) + "\n")
    return folder


def apply(teacher: Any, adapter: str | Path, meta: dict[str, Any] | None = None) -> LatentDenoiser:
    """The LCM student made of `teacher` (a latent teacher with a diffusers UNet) plus the adapter folder: a copy
    of the teacher's UNet gets the adapters, the consistency boundary preconditioning of the distillation."""
    adapter = Path(adapter)
    meta = meta or json.loads((adapter / META).read_text())
    unet = copy.deepcopy(unet_of(teacher)).float()
    config = load_adapter(unet, adapter)
    net = LoRANet(UNetNet(unet, null_label=null_label(teacher)), guidance=float(meta["guidance"]), loaded=config)
    den = Preconditioned(net, consistency(float(meta["sigma_min"]), float(meta["sigma_data"])),
                         float(meta["sigma_min"]), float(meta["sigma_max"]), tuple(teacher.shape))
    out = LatentDenoiser(den.eval().requires_grad_(False), teacher.autoencoder)
    out.config = {**meta, "kind": "lcm_lora", "num_classes": meta.get("num_classes") or teacher.config.get(
        "num_classes")}
    return out


def _build(config: dict[str, Any], state: Any, base: Path | None) -> nn.Module:
    if base is None:
        raise ValueError("an lcm_lora model is a folder (adapter + fewstep.json); load the folder itself")
    ref = str(config["base"])
    teacher = resolve(str(base / ref) if (base / ref).exists() else ref)
    return apply(teacher, base, config)


register(Kind("lcm_lora", _build, "renoise", guidance="input",
              doc="LCM-LoRA adapters (peft) on a base latent teacher, distilled at one guidance scale"))


def style_config(teacher: Any, rank: int, targets: str, autoencoder: str) -> dict[str, Any]:
    """The io config of a style LoRA: the teacher's UNet with rank-r adapters, the teacher's EDM preconditioning (a
    latent denoiser: a LoRA fine-tune of the teacher on new data, with the plain denoising loss)."""
    cfg = LCMConfig(w_min=1.0, w_max=1.0, lora_rank=rank, lora_targets=targets)
    mc = student_config(teacher, cfg, autoencoder)
    pc = getattr(getattr(teacher, "den", teacher), "precond", None)
    mc.update(kind="latent_denoiser", precond={"name": "edm", "kwargs": dict(getattr(pc, "kwargs", None) or {})})
    mc.pop("guidance_range", None)
    return mc


def finetune_style(teacher: Any, data: ImageData, rank: int, targets: str, tc: Any, autoencoder: str,
                   out: str | Path, resume: bool = False, device: str = "cpu", command: str | None = None) -> Any:
    """Fine-tune LoRA adapters on `teacher` with the EDM loss on `data` (images; encoded here): a style LoRA
    (LCM-LoRA Sec. 3's tau_style). Label dropout as the teacher's, so guidance still works."""
    mc = style_config(teacher, rank, targets, autoencoder)
    kwargs = dict(LOSS_KWARGS)
    run = dataclasses.replace(tc, loss="edm", loss_kwargs=kwargs)
    return train(mc, latents(teacher, data), run, out=out, ckpt=Path(out).with_suffix(".ckpt.pt"), resume=resume,
                 device=device, command=command, init_state=student_init(teacher, mc))


def with_adapter_merged(teacher: Any, adapted: Any, scale: float = 1.0) -> Any:
    """A copy of the latent teacher whose UNet has `scale` x the adapters of `adapted` (a style LoRA model, or an
    LoRA student) merged into its weights: the fine-tuned teacher as a plain diffusers UNet."""
    out = copy.deepcopy(teacher)
    plain = unet_of(out)
    dtype = next(plain.parameters()).dtype
    plain.load_state_dict({k: v.to(dtype) for k, v in merged_state(adapted.den.net.inner.unet, scale).items()})
    return out
