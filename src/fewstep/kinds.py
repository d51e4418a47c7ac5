"""Model kinds: what a saved model is, and the one builder that turns any checkpoint into the right object.

A checkpoint's config names its kind ("kind": "denoiser", ...). A kind says how to build the object from the config
and the weights, and how `fs.generate` samples it by default: "plan" (a solver plan run by the engine), "renoise"
(the consistency multistep sampler, Song et al. 2023, Alg. 1) or None (not a generator, e.g. an autoencoder).
Methods add their kinds with `register` (one-step generators, discriminators, LoRA adapters, quantized models).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .errors import CheckpointError
from .io import build_denoiser, load_state, read_config
from .latent.autoencoder import KLAutoencoder
from .latent.denoiser import LatentDenoiser

Builder = Callable[[dict[str, Any], "dict[str, torch.Tensor] | None", "Path | None"], Any]


@dataclass(frozen=True)
class Kind:
    """A model kind: its name, its builder (config, weights, the checkpoint's folder) -> object, and its sampler."""

    name: str
    build: Builder
    sampler: str | None  # "plan" | "renoise" | None (not a generator)
    guidance: str = "cfg"  # "cfg": guidance wraps the model (Ho & Salimans 2022); "input": w is a condition (LCM)
    doc: str = ""


KINDS: dict[str, Kind] = {}
SAMPLERS = ("plan", "renoise")
# kinds a method registers in its own module, imported the first time a checkpoint names them (methods sit above
# this layer, so nothing here imports them eagerly)
PLUGINS: dict[str, str] = {"lcm_lora": "fewstep.distill.lcm_lora", "ufogen": "fewstep.distill.ufogen_kind",
                        "quantized": "fewstep.quant.api", "quantized-consistency": "fewstep.quant.api"}


def register(kind: Kind) -> Kind:
    """Add (or replace) a model kind; returns it."""
    if kind.sampler is not None and kind.sampler not in SAMPLERS:
        raise ValueError(f"kind {kind.name!r}: sampler must be one of {', '.join(SAMPLERS)} or None, "
                         f"got {kind.sampler!r}")
    KINDS[kind.name] = kind
    return kind


def kind_of(config: dict[str, Any]) -> str:
    """The kind a config names; a denoiser with the consistency boundary preconditioning is a consistency student
    (checkpoints written before kinds existed say "denoiser" for both)."""
    name = config.get("kind", "denoiser")
    if name == "denoiser" and (config.get("precond") or {}).get("name") == "consistency":
        return "consistency"
    return name


def get(name: str) -> Kind:
    """The registered kind `name` (importing the method module that registers it); a CheckpointError listing the
    known kinds otherwise."""
    if name not in KINDS and name in PLUGINS:
        importlib.import_module(PLUGINS[name])
    if name not in KINDS:
        raise CheckpointError(f"unknown model kind {name!r}; known: {', '.join(sorted(KINDS))} (a newer fewstep, or "
                              "the method that saved it, registers it with fewstep.kinds.register)")
    return KINDS[name]


def model_kind(model: Any) -> Kind:
    """The kind of a loaded model: from its config, else a plain denoiser (diffusers, analytic, user callables)."""
    config = getattr(model, "config", None)
    if isinstance(config, dict) and config:
        return get(kind_of(config))
    return KINDS["denoiser"]


def build(config: dict[str, Any], state: dict[str, torch.Tensor] | None = None, base: Path | None = None) -> Any:
    """The object a checkpoint config describes, with weights `state`; `base` is the folder that relative
    references (a latent denoiser's autoencoder) are read from. The object carries the config as `.config`."""
    obj = get(kind_of(config)).build(config, state, base)
    if not getattr(obj, "config", None):
        obj.config = config
    return obj


def load(path: str | os.PathLike, device: str | torch.device = "cpu") -> Any:
    """Any fewstep checkpoint as the right object, frozen (eval mode, no gradients) on `device`."""
    path = Path(path)
    obj = build(read_config(path), load_state(path), path.parent)
    if isinstance(obj, nn.Module):
        obj = obj.eval().requires_grad_(False).to(device)
    return obj


def _denoiser(config: dict[str, Any], state: dict[str, torch.Tensor] | None, base: Path | None) -> nn.Module:
    return build_denoiser(config, state)


def _autoencoder(config: dict[str, Any], state: dict[str, torch.Tensor] | None, base: Path | None) -> nn.Module:
    """An autoencoder is a folder (AutoencoderKL + fewstep.json): `base` is that folder."""
    if base is None or not (base / "config.json").is_file():
        raise CheckpointError("an autoencoder is a diffusers AutoencoderKL folder; load the folder itself")
    return KLAutoencoder.from_pretrained(base)


def _latent_denoiser(config: dict[str, Any], state: dict[str, torch.Tensor] | None, base: Path | None) -> nn.Module:
    """A denoiser on latents (its weights are the file's: save `latent.den`) + the autoencoder its config references
    by a path relative to the checkpoint."""
    ref = config.get("autoencoder")
    if not isinstance(ref, str) or not ref:
        raise CheckpointError("a latent_denoiser config needs 'autoencoder': the autoencoder checkpoint's path, "
                              "relative to the latent denoiser's file")
    ae_path = Path(ref) if Path(ref).is_absolute() or base is None else base / ref
    if not ae_path.exists():
        raise CheckpointError(f"the latent denoiser's autoencoder {ae_path} does not exist; keep it beside the "
                              "checkpoint under the recorded name")
    ae = KLAutoencoder.from_pretrained(ae_path) if ae_path.is_dir() else load(ae_path)
    out = LatentDenoiser(build_denoiser({**config, "kind": "denoiser"}, state), ae)
    out.config = config
    return out


register(Kind("denoiser", _denoiser, "plan", doc="D(x, sigma, cond) -> x0 (a Preconditioned network)"))
register(Kind("consistency", _denoiser, "renoise", doc="a consistency student f(x, sigma) -> x0 (CM Sec. 3)"))
register(Kind("autoencoder", _autoencoder, None,
              doc="a KL autoencoder (a diffusers AutoencoderKL folder): encode(x) -> z, decode(z) -> x"))
register(Kind("latent_denoiser", _latent_denoiser, "plan",
              doc="a denoiser on an autoencoder's latents; samples are decoded (LDM, Rombach et al. 2022)"))
register(Kind("latent_consistency", _latent_denoiser, "renoise", guidance="input",
              doc="a latent consistency student taking the guidance scale as input (LCM, Luo et al. 2023)"))
