"""Real int8 measured on this CPU: mnist-ldm's UNet quantized by TFMQ-DM at W8A8, converted with PT2E and compiled
by Inductor (fewstep.quant.int8), against eager float32 and compiled float32 (the same freezing Inductor config) at
batch 1 and 256 in one run, with the model sizes and FD of decoded samples under the recorded guidance."""

from __future__ import annotations

import copy
import statistics
import time
from typing import Any

import torch
from torch import Tensor, nn

from ..guidance import CFG
from ..metrics import fd, noise_floor
from ..quant.api import quantize
from ..quant.int8 import Int8Net, quantize_pt2e, to_int8
from ..quant.model import null_label
from ..seed import noise
from ..solvers.engine import sample
from ..zoo import load
from ..zoo.lookup import dataset_of, manifest, resolve_plan


def _time(fn: Any, args: tuple[Tensor, ...], repeats: int) -> float:
    """Median seconds of fn(*args) over `repeats` calls after two warm-up calls (which compile)."""
    with torch.no_grad():
        for _ in range(2):
            fn(*args)
        out = []
        for _ in range(repeats):
            t = time.perf_counter()
            fn(*args)
            out.append(time.perf_counter() - t)
    return statistics.median(out)


def _bytes(m: nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in m.state_dict().values())


@torch.no_grad()
def _decoded(den: Any, plan: Any, n: int, seed: int, g: float, batch: int = 250) -> Tensor:
    y = torch.arange(n) % 10
    z = noise(n, seed, tuple(den.shape), float(plan.sigmas[0]))
    d = CFG(den, g)
    return torch.cat([den.decode(sample(d, z[i:i + batch], plan, cond=y[i:i + batch])) for i in range(0, n, batch)])


def run(model: str = "mnist-ldm", n: int = 500, seed: int = 100, calib_n: int = 64, repeats: int = 5,
        iters: int = 60) -> dict[str, Any]:
    """The int8 tables: throughput (eager fp32, compiled fp32, compiled int8) at batch 1 and 256, sizes, FD."""
    import torch._inductor.config as inductor_config

    from ..quant.recon import ReconConfig

    t0 = time.perf_counter()
    den = load(model)
    g = float(manifest(model).get("guidance", 2.0))
    dataset = dataset_of(den) or "mnist5k"
    rec = den.config.get("sampler") or {}
    plan = resolve_plan(rec.get("plan", "dpm_solver_pp_2m"), den, rec.get("nfe", 10), rec.get("grid", "logsnr"))
    labels = torch.arange(calib_n) % 10
    q = quantize(den, "w8a8", "tfmq", plan=plan, calib_n=calib_n, labels=labels, guidance=g,
                 recon=ReconConfig(iters=iters))
    calib_s = q.config["quant"]["calib_s"]
    unet = den.den.net.eval()
    fp_bytes = _bytes(unet)
    inductor_config.freezing = True
    rows, raw = [], {"calib_s": calib_s, "fp32_bytes": fp_bytes, "threads": torch.get_num_threads(), "speed": {}}
    graphs = {}
    for b in (1, 256):
        tq = time.perf_counter()
        gm, int8_bytes = quantize_pt2e(q, batch=b)
        convert_s = time.perf_counter() - tq
        graphs[b] = torch.compile(gm)
        int8 = Int8Net({b: graphs[b]}, null_label(q), int8_bytes)
        compiled_fp = torch.compile(copy.deepcopy(unet))
        x = torch.randn(b, *den.shape)
        c = torch.full((b,), 0.5)
        y = torch.arange(b) % 10
        t_eager = _time(unet, (x, c, y), repeats)
        tc = time.perf_counter()
        t_comp = _time(compiled_fp, (x, c, y), repeats)
        ti = time.perf_counter()
        t_int8 = _time(int8, (x, c, y), repeats)
        raw["speed"][b] = {"eager_fp32_s": t_eager, "compiled_fp32_s": t_comp, "int8_s": t_int8,
                           "fp32_compile_and_time_s": ti - tc, "int8_compile_and_time_s": time.perf_counter() - ti,
                           "pt2e_convert_s": convert_s}
        raw["int8_bytes"] = int8_bytes
        rows.append([b, b / t_eager, b / t_comp, b / t_int8, t_eager / t_int8, t_comp / t_int8])
    int8_bytes = raw["int8_bytes"]
    q8 = to_int8(q, compile=False)
    q8.den.net.fns = {256: graphs[256]}  # the same compiled graph as timed
    x_fp = _decoded(den, plan, n, seed, g)
    x_sim = _decoded(q, plan, n, seed, g)
    x_int8 = _decoded(q8, plan, n, seed, g)
    fds = {k: fd(v, dataset) for k, v in (("fp32", x_fp), ("w8a8_simulated", x_sim), ("int8", x_int8))}
    raw["fd"] = fds
    floor = noise_floor(dataset, n)
    s256 = raw["speed"][256]
    summary = [
        f"Real int8 (PT2E + X86InductorQuantizer, Inductor freezing + torch.compile) of {model}'s UNet at "
        f"{torch.get_num_threads()} thread(s), one run on a 2-core machine shared with other jobs: batch 256 "
        f"{s256['compiled_fp32_s'] / s256['int8_s']:.2f}x compiled float32 (target >= 1.3x) and "
        f"{s256['eager_fp32_s'] / s256['int8_s']:.2f}x eager float32 (one static-shape graph per batch size); "
        f"size {int8_bytes / 1e6:.2f} MB vs "
        f"{fp_bytes / 1e6:.2f} MB float32.",
        f"FD ({dataset}, n={n}, guidance {g}, {plan.nfe}-NFE {rec.get('plan', 'dpm_solver_pp_2m')}, decoded): "
        f"float32 {fds['fp32']:.3g}, W8A8 simulated (TFMQ) {fds['w8a8_simulated']:.3g} "
        f"({fds['w8a8_simulated'] / fds['fp32']:.3f}x), real int8 {fds['int8']:.3g} ({fds['int8'] / fds['fp32']:.3f}x, "
        f"target <= 1.05x); noise floor {floor:.3g}. TFMQ calibration {calib_s:.0f} s.",
    ]
    tables = [{"title": f"Real int8 on this CPU: {model}'s UNet, images/s (one run, median of {repeats} calls after "
                        "warm-up; speed-ups are ratios of the same run)",
               "columns": ["batch", "eager fp32 img/s", "compiled fp32 img/s", "int8 img/s", "int8 / eager",
                           "int8 / compiled"], "rows": rows},
              {"title": "Model size and quality of the real int8 model",
               "columns": ["variant", "MB", "FD", "FD ratio"],
               "rows": [["float32", fp_bytes / 1e6, fds["fp32"], 1.0],
                        ["W8A8 simulated (TFMQ)", None, fds["w8a8_simulated"], fds["w8a8_simulated"] / fds["fp32"]],
                        ["int8 (PT2E, compiled)", int8_bytes / 1e6, fds["int8"], fds["int8"] / fds["fp32"]]]}]
    raw["wall_s"] = time.perf_counter() - t0
    for t in tables:
        t["part"] = "int8"
    return {"tables": tables, "summary": summary, "raw": raw}


def main(out: str) -> None:
    """Run the int8 part alone and write its JSON (merged into bench-results/quant.json by `fewstep bench quant
    --no-sim --int8`)."""
    import json

    from .strict_json import dumps

    torch.set_num_threads(1)
    res = run()
    with open(out, "w") as f:
        f.write(dumps(res, indent=1))
    del json


if __name__ == "__main__":
    import sys

    main(sys.argv[1])
