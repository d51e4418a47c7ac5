"""A network whose diffusers UNet carries LoRA adapters (Hu et al. 2022), injected with peft, the base weights
frozen: LCM-LoRA's student (Luo et al. 2023, "LCM-LoRA", Sec. 3). The adapters are a peft state dict, saved and
loaded in peft's own format (`adapter_config.json` + `adapter_model.safetensors`), so they also load into any copy
of the teacher's UNet2DModel with peft alone.

An LCM-LoRA has no w-input: it is distilled at one guidance scale `guidance`, which sampling must use."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .guidance_embed import split_cond

TARGETS = {"attn": ["to_q", "to_k", "to_v", "to_out.0"],
           "attn+conv": ["to_q", "to_k", "to_v", "to_out.0", "conv1", "conv2", "time_emb_proj"]}
ADAPTER_CONFIG, ADAPTER_WEIGHTS = "adapter_config.json", "adapter_model.safetensors"


def lora_config(rank: int, targets: str = "attn+conv", alpha: float | None = None) -> Any:
    """peft's LoraConfig of rank r on the named target set (lora_alpha = r: scale 1; B = 0, so no change at init)."""
    from peft import LoraConfig

    if targets not in TARGETS:
        raise ValueError(f"unknown LoRA targets {targets!r}; known: {', '.join(TARGETS)}")
    return LoraConfig(r=int(rank), lora_alpha=float(alpha or rank), target_modules=TARGETS[targets],
                      init_lora_weights=True)


def inject(unet: nn.Module, config: Any) -> nn.Module:
    """Add the adapters of `config` to `unet` in place (peft.inject_adapter_in_model); freeze everything else."""
    from peft import inject_adapter_in_model

    inject_adapter_in_model(config, unet)
    for name, p in unet.named_parameters():
        p.requires_grad_("lora_" in name)
    return unet


def adapter_state(unet: nn.Module) -> dict[str, Tensor]:
    """The adapters' weights in peft's key format (get_peft_model_state_dict)."""
    from peft import get_peft_model_state_dict

    return get_peft_model_state_dict(unet)


def save_adapter(unet: nn.Module, config: Any, folder: str | Path, dtype: torch.dtype = torch.float16) -> Path:
    """Write the adapters as peft does: adapter_config.json + adapter_model.safetensors (16-bit by default)."""
    from safetensors.torch import save_file

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(str(folder))
    save_file({k: v.detach().to(dtype).contiguous().cpu() for k, v in adapter_state(unet).items()},
              str(folder / ADAPTER_WEIGHTS))
    return folder


def load_adapter(unet: nn.Module, folder: str | Path) -> Any:
    """Inject the adapters saved in `folder` into `unet` (a copy of the teacher's UNet) and load their weights;
    returns their peft LoraConfig."""
    from peft import LoraConfig, set_peft_model_state_dict
    from safetensors.torch import load_file

    folder = Path(folder)
    config = LoraConfig(**{k: v for k, v in json.loads((folder / ADAPTER_CONFIG).read_text()).items()
                           if k in LoraConfig.__dataclass_fields__})
    inject(unet, config)
    dtype = next(unet.parameters()).dtype
    weights = {k: v.to(dtype) for k, v in load_file(str(folder / ADAPTER_WEIGHTS)).items()}
    result = set_peft_model_state_dict(unet, weights)
    if getattr(result, "unexpected_keys", None):
        raise ValueError(f"the adapter in {folder} does not fit this UNet: {result.unexpected_keys[:3]}")
    return config


class LoRANet(nn.Module):
    """F(x_in, c_noise, cond) = inner with LoRA adapters on its UNet; cond {"y", "w"} must carry the guidance the
    adapters were distilled at (or no w)."""

    def __init__(self, inner: nn.Module, rank: int = 4, targets: str = "attn+conv", guidance: float = 1.0,
                 loaded: Any = None) -> None:
        super().__init__()
        self.inner, self.guidance = inner, float(guidance)
        if loaded is not None:  # inner's UNet already carries adapters (load_adapter's LoraConfig)
            self.lora = loaded
        else:
            self.lora = lora_config(rank, targets)
            inject(inner.unet, self.lora)

    def forward(self, x_in: Tensor, c_noise: Tensor, cond: Any = None) -> Tensor:
        y, w = split_cond(cond, x_in.shape[0], x_in.device)
        if isinstance(cond, dict) and "w" in cond and not torch.allclose(w, torch.full_like(w, self.guidance)):
            raise ValueError(f"this LCM-LoRA was distilled at guidance {self.guidance:g} and has no w-input; sample "
                             f"it with guidance={self.guidance:g} (or none), or use a full LCM for other scales")
        return self.inner(x_in, c_noise, y)


def merged_state(unet: nn.Module, scale: float = 1.0) -> dict[str, Tensor]:
    """The state dict of `unet` without adapters, `scale` times their update added to its weights: W + scale *
    Delta W (peft's merge, on a copy), e.g. a LoRA fine-tune turned into plain teacher weights."""
    from peft.tuners.lora import LoraLayer

    work = copy.deepcopy(unet)
    for m in work.modules():
        if isinstance(m, LoraLayer):
            for name in list(m.scaling):
                m.scaling[name] *= float(scale)
            m.merge()
    return {k.replace(".base_layer.", "."): v for k, v in work.state_dict().items() if "lora_" not in k}
