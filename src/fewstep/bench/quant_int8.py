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
from ..metrics import fd
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
        iters: int = 60, batches: tuple[int, ...] = (256, 1), out: str | None = None) -> dict[str, Any]:
    """The int8 tables: throughput (eager fp32, compiled fp32, compiled int8) per batch size (256 first, with the
    FD check on its graph), sizes, FD. `out`: a JSON written after every stage (compiling is slow here)."""
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
    unet = den.den.net.eval()
    inductor_config.freezing = True
    raw: dict[str, Any] = {"calib_s": q.config["quant"]["calib_s"], "fp32_bytes": _bytes(unet),
                           "threads": torch.get_num_threads(), "speed": {}, "model": model, "n": n, "guidance": g,
                           "plan": f"{rec.get('plan', 'dpm_solver_pp_2m')} {plan.nfe} NFE", "dataset": dataset,
                           "repeats": repeats}
    for b in batches:
        tq = time.perf_counter()
        gm, raw["int8_bytes"] = quantize_pt2e(q, batch=b)
        convert_s = time.perf_counter() - tq
        graph = torch.compile(gm)
        int8 = Int8Net({b: graph}, null_label(q), raw["int8_bytes"])
        compiled_fp = torch.compile(copy.deepcopy(unet))
        x, c, y = torch.randn(b, *den.shape), torch.full((b,), 0.5), torch.arange(b) % 10
        t_eager = _time(unet, (x, c, y), repeats)
        tc = time.perf_counter()
        t_comp = _time(compiled_fp, (x, c, y), repeats)
        ti = time.perf_counter()
        t_int8 = _time(int8, (x, c, y), repeats)
        raw["speed"][b] = {"eager_fp32_s": t_eager, "compiled_fp32_s": t_comp, "int8_s": t_int8,
                           "fp32_compile_and_time_s": ti - tc, "int8_compile_and_time_s": time.perf_counter() - ti,
                           "pt2e_convert_s": convert_s}
        if b == max(batches):
            q8 = to_int8(q, compile=False)
            q8.den.net.fns = {b: graph}  # the same compiled graph as timed; other sizes run in padded chunks
            fds = {k: fd(_decoded(m, plan, n, seed, g), dataset) for k, m in
                   (("fp32", den), ("w8a8_simulated", q), ("int8", q8))}
            raw["fd"] = fds
        if out:
            _write(out, report(raw))
    raw["wall_s"] = time.perf_counter() - t0
    res = report(raw)
    if out:
        _write(out, res)
    return res


def _write(path: str, res: dict[str, Any]) -> None:
    from ..io import atomic_write_text
    from .strict_json import dumps

    atomic_write_text(path, dumps(res, indent=1))


def report(raw: dict[str, Any]) -> dict[str, Any]:
    """Tables and summary lines from the raw int8 measurements (whatever stages have run)."""
    speed, fds = raw["speed"], raw.get("fd", {})
    rows = [[b, b / s["eager_fp32_s"], b / s["compiled_fp32_s"], b / s["int8_s"], s["eager_fp32_s"] / s["int8_s"],
             s["compiled_fp32_s"] / s["int8_s"]] for b, s in sorted(speed.items(), key=lambda kv: int(kv[0]))]
    fp_mb, q_mb = raw["fp32_bytes"] / 1e6, raw.get("int8_bytes", 0) / 1e6
    summary = []
    for b, s in speed.items():
        summary.append(f"Real int8 (PT2E + X86InductorQuantizer, Inductor freezing + torch.compile) of "
                       f"{raw['model']}'s UNet, {raw['threads']} thread, one run on a 2-core machine shared with other "
                       f"jobs, batch {b}: "
                       f"{s['compiled_fp32_s'] / s['int8_s']:.2f}x compiled float32 (target >= 1.3x at batch 256) and "
                       f"{s['eager_fp32_s'] / s['int8_s']:.2f}x eager float32; size {q_mb:.2f} MB vs {fp_mb:.2f} MB.")
    if fds:
        summary.append(f"FD ({raw['dataset']}, n={raw['n']}, guidance {raw['guidance']}, {raw['plan']}, decoded): "
                       f"float32 {fds['fp32']:.3g}, W8A8 simulated (TFMQ) {fds['w8a8_simulated']:.3g} "
                       f"({fds['w8a8_simulated'] / fds['fp32']:.3f}x), real int8 {fds['int8']:.3g} "
                       f"({fds['int8'] / fds['fp32']:.3f}x, target <= 1.05x). TFMQ calibration {raw['calib_s']:.0f} s.")
    tables = [{"title": f"Real int8 on this CPU: {raw['model']}'s UNet, images/s (one run, median of {raw['repeats']} "
                        "calls after warm-up; speed-ups are ratios of the same run)",
               "columns": ["batch", "eager fp32 img/s", "compiled fp32 img/s", "int8 img/s", "int8 / eager",
                           "int8 / compiled"], "rows": rows, "part": "int8"}]
    if fds:
        tables.append({"title": "Model size and quality of the real int8 model", "part": "int8",
                       "columns": ["variant", "MB", "FD", "FD ratio"],
                       "rows": [["float32", fp_mb, fds["fp32"], 1.0],
                                ["W8A8 simulated (TFMQ)", None, fds["w8a8_simulated"],
                                 fds["w8a8_simulated"] / fds["fp32"]],
                                ["int8 (PT2E, compiled)", q_mb, fds["int8"], fds["int8"] / fds["fp32"]]]})
    return {"tables": tables, "summary": summary, "raw": raw}


def retime(model: str = "mnist-ldm", batch: int = 256, repeats: int = 7, calib_n: int = 32,
           iters: int = 20) -> dict[str, Any]:
    """Throughput at one batch size with the three variants timed in turn, call by call (eager fp32, compiled fp32,
    int8), so a change of the machine's load during the run hits all three alike; medians."""
    import torch._inductor.config as inductor_config

    from ..quant.recon import ReconConfig

    den = load(model)
    g = float(manifest(model).get("guidance", 2.0))
    rec = den.config.get("sampler") or {}
    plan = resolve_plan(rec.get("plan", "dpm_solver_pp_2m"), den, rec.get("nfe", 10), rec.get("grid", "logsnr"))
    q = quantize(den, "w8a8", "tfmq", plan=plan, calib_n=calib_n, labels=torch.arange(calib_n) % 10, guidance=g,
                 recon=ReconConfig(iters=iters))
    unet = den.den.net.eval()
    inductor_config.freezing = True
    gm, _ = quantize_pt2e(q, batch=batch)
    fns = {"eager_fp32_s": unet, "compiled_fp32_s": torch.compile(copy.deepcopy(unet)),
           "int8_s": Int8Net({batch: torch.compile(gm)}, null_label(q), 0)}
    args = (torch.randn(batch, *den.shape), torch.full((batch,), 0.5), torch.arange(batch) % 10)
    times: dict[str, list[float]] = {k: [] for k in fns}
    with torch.no_grad():
        for f in fns.values():
            for _ in range(2):
                f(*args)
        for _ in range(repeats):
            for k, f in fns.items():
                t = time.perf_counter()
                f(*args)
                times[k].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"batch": batch, "repeats": repeats, "median": med, "times": times}


def main(out: str) -> None:
    """Run the int8 part alone, writing its JSON after every stage (merged into bench-results/quant.json by
    `fewstep bench quant --no-sim --int8-json OUT`)."""
    torch.set_num_threads(1)
    run(n=300, calib_n=32, iters=20, repeats=3, out=out)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["--retime"]:
        torch.set_num_threads(1)
        _write(sys.argv[2], retime(batch=int(sys.argv[3]) if len(sys.argv) > 3 else 256,
                                   repeats=int(sys.argv[4]) if len(sys.argv) > 4 else 7))
    else:
        main(sys.argv[1])
