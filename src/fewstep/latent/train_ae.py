"""Train the KL autoencoder (Rombach et al. 2022, Sec. 3):
L = |x - D(z)|_1 + w LPIPS(x, D(z)) + beta KL(q(z|x) || N(0, I)) / (H W), z ~ q(z|x): the decoder learns on
posterior samples, so it tolerates a sampler's latent error. Checkpoints are atomic and a resumed run draws what an
uninterrupted one would (generators seeded by (seed, step)). The latents are then standardised: shift_factor =
their mean, scaling_factor = 1 / their std over the training set."""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ..errors import CheckpointError, DataError
from ..io import atomic_torch_save, git_commit
from ..metrics.perceptual import lpips
from ..progress import Bar
from ..train.loop import batch_indices, step_generator
from .autoencoder import KLAutoencoder, make_vae
from .config import AEConfig


def lr_factor(cfg: AEConfig, step: int) -> float:
    """Linear warm-up, then a cosine decay to 0 at cfg.steps."""
    if step < cfg.warmup:
        return (step + 1) / cfg.warmup
    return 0.5 * (1 + math.cos(math.pi * (step - cfg.warmup) / max(cfg.steps - cfg.warmup, 1)))


def ae_loss(ae: KLAutoencoder, x: Tensor, cfg: AEConfig, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """(the loss, its L1 part) of a batch, decoding a posterior sample: L1 on the padded image + cfg.perceptual x
    LPIPS on the image (LDM's reconstruction term, Rombach et al. 2022, App. G) + cfg.kl_weight x KL per pixel."""
    xp = ae.padded(x)
    q = ae.vae.encode(xp).latent_dist
    rec = ae.vae.decode(q.sample(generator)).sample
    l1 = (rec - xp).abs().mean()
    kl = q.kl().mean() / (xp.shape[-1] * xp.shape[-2] * xp.shape[1])
    loss = l1 + cfg.kl_weight * kl
    if cfg.perceptual:
        loss = loss + cfg.perceptual * lpips(ae.cropped(rec), x).mean()
    return loss, l1


@torch.no_grad()
def standardise(ae: KLAutoencoder, x: Tensor, batch: int = 500) -> dict[str, float]:
    """Set the VAE config's shift_factor / scaling_factor so the posterior means of x have mean 0 and std 1."""
    m = torch.cat([ae.posterior(x[i:i + batch]).mean for i in range(0, len(x), batch)]).double()
    shift, std = float(m.mean()), float(m.std())
    ae.vae.register_to_config(shift_factor=shift, scaling_factor=1.0 / std)
    return {"shift_factor": shift, "scaling_factor": 1.0 / std, "latent_std_raw": std}


def train_autoencoder(data: Any, cfg: AEConfig, out: str | Path, ckpt: str | Path | None = None,
                      resume: bool = False, device: str = "cpu", command: str | None = None,
                      progress: bool = True) -> KLAutoencoder:
    """Train an autoencoder on data.x [N, C, H, W] in [-1, 1]; writes the diffusers folder `out` (AutoencoderKL +
    fewstep.json) and the checkpoint `ckpt` (default out + ".ckpt.pt"); returns it in eval mode."""
    x_all = data.x.to(device)
    c, h, w = x_all.shape[1:]
    if h != w:
        raise DataError(f"the autoencoder takes square images, got {h}x{w}")
    size = 2 ** math.ceil(math.log2(h))
    if len(x_all) < cfg.batch:
        raise DataError(f"the data set has {len(x_all)} images, fewer than one batch ({cfg.batch}); lower --batch")
    torch.manual_seed(cfg.seed)
    ae = KLAutoencoder(make_vae(c, cfg.widths(), cfg.latent_channels, size), h,
                       {"data": getattr(data, "name", None)}).to(device).train()
    opt = torch.optim.AdamW(ae.parameters(), lr=cfg.lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(cfg, s))
    out = Path(out)
    ckpt = Path(ckpt) if ckpt is not None else out.with_name(out.name + ".ckpt.pt")
    step, history, wall0 = 0, [], 0.0
    if resume:
        if not ckpt.is_file():
            raise FileNotFoundError(f"no autoencoder checkpoint at {ckpt}; run without --resume to start afresh")
        state = torch.load(ckpt, map_location="cpu", weights_only=True)
        saved, now = state.get("config") or {}, dataclasses.asdict(cfg)
        if any(saved.get(k) != v for k, v in now.items() if k != "ckpt_every"):
            raise CheckpointError(f"{ckpt} was trained with other settings ({state.get('config')}); resume with "
                                  "the same options (the cosine LR depends on --steps too) or use another --out")
        ae.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        step, history, wall0 = int(state["step"]), list(state["losses"]), float(state["wall_s"])
    t0 = time.perf_counter()

    def save_ckpt() -> None:
        atomic_torch_save({"model": ae.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(),
                           "step": step, "losses": history, "config": dataclasses.asdict(cfg),
                           "wall_s": wall0 + time.perf_counter() - t0}, ckpt)

    with Bar(cfg.steps, "autoencoder", enabled=progress, start=step) as bar:
        while step < cfg.steps:
            idx = batch_indices(len(x_all), cfg.batch, step, cfg.seed).to(device)
            gen = step_generator(cfg.seed, step, 0, torch.device(device))
            loss, l1 = ae_loss(ae, x_all[idx], cfg, gen)
            if not torch.isfinite(loss):
                raise FloatingPointError(f"loss became {loss.item()} at step {step}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(ae.parameters(), 1.0)
            opt.step()
            sched.step()
            step += 1
            history.append(round(l1.item(), 6))
            bar.advance(1)
            if step % cfg.ckpt_every == 0 or step == cfg.steps:
                save_ckpt()
    ae.eval()
    stats = standardise(ae, x_all)
    ae.config.update({"train": {**dataclasses.asdict(cfg), "command": command, "commit": git_commit(),
                                "wall_s": round(wall0 + time.perf_counter() - t0, 1), "final_l1": history[-1],
                                "device": str(device)}, "latents": stats})
    ae.save_pretrained(out)
    return ae
