"""`fs.quant.quantize`: post-training quantization of a denoiser, TFMQ-DM (Huang et al., CVPR 2024; the journal
version's temporal cache) or the Q-Diffusion baseline (Li et al., ICCV 2023); saving and loading the result as the
"quantized" model kind that `fs.zoo.load` and `fs.generate` run.

TFMQ:        one pass of `plan` -> TIAR (or the FP temporal cache) -> BRECQ blocks without the TIB -> activations
             per plan step (FSC).
Q-Diffusion: a trajectory uniform over the steps -> BRECQ blocks with the time projections -> one set of
             activations for all steps, their step sizes learnt per block; split quantizers on skip concatenations.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .. import kinds
from ..errors import CheckpointError
from ..io import build_denoiser, save_model
from ..solvers.plan import Plan
from .calib import Calib, calibrate_activations, plan_pass, trajectory_pass
from .model import QuantizedDenoiser, fresh_copy, parse_bits
from .recon import ReconConfig, reconstruct_blocks, temporal_cosines, tiar

METHODS = ("tfmq", "qdiffusion")
BITS = ("w8a8", "w4a8", "w4a32")


def calibration_plan(base: Any, plan: Any = None, nfe: int | None = None,
                     grid: str | None = None) -> Plan | list[float]:
    """The plan a model is calibrated for: a Plan / name / file / "searched" for a denoiser (default: its recorded
    sampler), or a consistency student's sigmas (default: its recorded one-step sampler)."""
    from ..zoo.generate import renoise_sigmas, sampler_defaults  # zoo imports kinds, which registers this kind
    from ..zoo.lookup import resolve_plan, zoo_name

    recorded = sampler_defaults(base)
    if kinds.model_kind(base).sampler == "renoise":
        return renoise_sigmas(base, nfe, plan if not isinstance(plan, (str, Plan)) else None, recorded)
    if plan is None:
        plan, nfe = recorded.get("plan", "heun"), nfe or recorded.get("nfe", 35)
    return resolve_plan(plan, base, nfe, grid or recorded.get("grid", "karras"), model=zoo_name(base))


def quantize(model: Any, bits: str = "w8a8", method: str = "tfmq", plan: Any = None, calib_n: int = 256,
             nfe: int | None = None, grid: str | None = None, seed: int = 0, cache: bool = True,
             labels: Tensor | None = None, guidance: float | None = None, recon: ReconConfig | None = None,
             recon_n: int = 1024) -> QuantizedDenoiser:
    """A quantized denoiser of `model` (zoo name, path or loaded) at bits "w8a8" | "w4a8" | "w4a32" by `method`
    "tfmq" | "qdiffusion". TFMQ calibrates for `plan` (one sampling pass on calib_n noises; recalibrating for a new
    plan is `recalibrate`); `cache`: serve full-precision temporal features per step (journal version) instead of
    the TIAR-reconstructed TIB. labels / guidance: the conditions of the calibration pass."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}, got {method!r}")
    parse_bits(bits)
    from ..zoo.lookup import resolve

    cfg = recon or ReconConfig()
    base = resolve(model)
    fp = fresh_copy(base.den if getattr(base, "autoencoder", None) is not None and hasattr(base, "den") else base)
    t0 = time.perf_counter()
    p = calibration_plan(base, plan, nfe, grid)
    c = plan_pass(fp, p, calib_n, seed, labels, guidance) if method == "tfmq" else \
        trajectory_pass(fp, calib_n, seed, labels, guidance)
    q = QuantizedDenoiser(fresh_copy(base), bits, method, c.keys)
    rc = c.subset(recon_n, seed)
    info: dict[str, Any] = {}
    use_cache = method == "tfmq" and cache
    if method == "tfmq":
        if use_cache:
            for m in q.qlayers():
                if m.role == "tib":
                    m.use_w = False  # served in full precision from the cache
        else:
            info["tiar_loss"] = tiar(q, fp, rc, cfg, seed)
    info["block_loss"] = reconstruct_blocks(q, fp, rc, cfg, seed)
    q.bake()
    if parse_bits(bits)[1] is not None:
        calibrate_activations(q, c, seed=seed)
        if method == "qdiffusion":
            reconstruct_blocks(q, fp, rc, cfg, seed, acts=True)
    q.ctx.cache = use_cache
    seconds = time.perf_counter() - t0
    q.config = _config(base, q, p, c, cache=use_cache, calib_n=calib_n, seconds=seconds, seed=seed,
                       cfg=cfg, info=info)
    q.calib = c  # the calibration data, for diagnostics (temporal_cosines); not saved
    return q


def recalibrate(q: QuantizedDenoiser, plan: Plan | list[float], calib_n: int = 256, seed: int = 0,
                labels: Tensor | None = None, guidance: float | None = None) -> QuantizedDenoiser:
    """FSC for a new plan in one pass: its sigmas become the keys and each step's activation parameters are set
    from one sampling pass of the quantized model's own weights (activations off) with that plan."""
    q.set_act(False)
    cache, q.ctx.cache = q.ctx.cache, False
    c = plan_pass(q, plan, calib_n, seed, labels, guidance)
    q.log_sigmas = torch.tensor([float(torch.tensor(s).log()) for s in c.keys], dtype=torch.float64)
    for m in q.qlayers():
        m.memo.clear()
        for a in (m.aq, m.aq2):
            if a is not None:
                _resize(a, len(c.keys) if q.fsc else 1)
    calibrate_activations(q, c, seed=seed)
    q.ctx.cache = cache
    q.config["quant"]["keys"] = c.keys
    return q


def _resize(a: nn.Module, k: int) -> None:
    a.keys = k
    a.delta = nn.Parameter(torch.ones(k), requires_grad=False)
    a.z = torch.zeros(k)
    a.ready = torch.zeros(k, dtype=torch.bool)


def cosines(q: QuantizedDenoiser, fp_model: Any) -> list[float]:
    """Temporal-feature cosine similarity to full precision at each calibrated step (needs q.calib)."""
    from ..zoo.lookup import resolve

    fp = resolve(fp_model)
    fp = fp.den if getattr(fp, "autoencoder", None) is not None and hasattr(fp, "den") else fp
    return temporal_cosines(q, fp, q.calib)


def _config(base: Any, q: QuantizedDenoiser, p: Any, c: Calib, **kw: Any) -> dict[str, Any]:
    from ..zoo.lookup import zoo_name

    bc = dict(getattr(base, "config", None) or {})
    base_kind = kinds.kind_of(bc) if bc else "denoiser"
    sampler: dict[str, Any]
    if isinstance(p, Plan):
        sampler = {"plan": p, "nfe": p.nfe}  # a Plan in memory; `save` writes it beside the model
    else:
        sampler = {"nfe": len(p), "sigmas": {str(len(p)): list(p)}}
    cfg = kw.pop("cfg")
    quant = {"bits": q.bits, "method": q.method, "keys": c.keys, "base_kind": base_kind,
             "calib_s": kw.pop("seconds"), "iters": cfg.iters, "act_iters": cfg.act_iters, **kw}
    out = {k: v for k, v in bc.items() if k not in ("metrics", "zoo_name", "sampler", "curve")}
    return {**out, "kind": "quantized-consistency" if base_kind == "consistency" else "quantized",
            "quant": quant, "sampler": sampler, "base_model": zoo_name(base)}


def save(q: QuantizedDenoiser, path: str | Path) -> Path:
    """Write a quantized model (its baked weights, per-step activation parameters, keys and config) to one
    safetensors file; a plan it was calibrated for is written beside it as <path>.plan.json."""
    path = Path(path)
    if q.autoencoder is not None:
        raise CheckpointError("saving a quantized latent model is not supported yet; quantize it in the session "
                              "that uses it (fs.quant.quantize returns the model)")
    sampler = dict(q.config.get("sampler") or {})
    plan = sampler.pop("plan", None)
    if isinstance(plan, Plan):
        plan_file = path.with_suffix(".plan.json")
        plan_file.parent.mkdir(parents=True, exist_ok=True)
        plan_file.write_text(plan.to_json())
        sampler["plan"] = plan_file.name  # relative: read beside the model file
    elif plan is not None:
        sampler["plan"] = plan
    cfg = json.loads(json.dumps({**q.config, "sampler": sampler}, default=str))
    return save_model(path, q, cfg)


def _build(config: dict[str, Any], state: dict[str, Tensor] | None, base: Path | None) -> nn.Module:
    """The "quantized" kind's builder: the base denoiser's structure, the QLayers, then the saved state."""
    qc = config.get("quant") or {}
    if not qc.get("bits") or not qc.get("method") or not qc.get("keys"):
        raise CheckpointError("a quantized model's config needs quant.bits, quant.method and quant.keys")
    den = build_denoiser({**config, "kind": qc.get("base_kind", "denoiser")})
    q = QuantizedDenoiser(den, qc["bits"], qc["method"], [float(s) for s in qc["keys"]], init_weights=False)
    if state is not None:
        missing, unexpected = q.load_state_dict(state, strict=False)
        if missing or unexpected:
            raise CheckpointError(f"quantized weights do not match: missing {missing[:5]}, unexpected "
                                  f"{unexpected[:5]}")
    q.set_act(True)  # quantizers without calibrated parameters pass activations through
    q.ctx.cache = bool(qc.get("cache"))
    plan = (config.get("sampler") or {}).get("plan")
    if isinstance(plan, str) and plan.endswith(".json") and base is not None and not Path(plan).is_absolute():
        config = {**config, "sampler": {**config["sampler"], "plan": str(base / plan)}}
    q.config = config
    return q.eval()


kinds.register(kinds.Kind("quantized", _build, "plan",
                          doc="a post-training-quantized denoiser (TFMQ-DM or Q-Diffusion), keyed by plan step"))
kinds.register(kinds.Kind("quantized-consistency", _build, "renoise",
                          doc="a post-training-quantized consistency student"))
