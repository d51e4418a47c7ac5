"""`fewstep bench compile`: sampling speed of a model under torch.compile (TorchDynamo + Inductor, PyTorch 2)
against eager, in one run on one machine, through fs.generate's own `compile=True` path.

Both modes sample the same per-sample seeded noise with the same plan; the compiled run is timed after one warm-up
call that pays the compilation (reported apart), and the outputs are compared (max |compiled - eager|). If
torch.compile is unavailable or fails here, the payload says so and why instead of a ratio.
"""

from __future__ import annotations

import platform
import statistics
import time
from typing import Any

import torch

from ..zoo import load
from ..zoo.generate import draw


def run(model: str = "digits-edm", n: int = 256, nfe: int = 10, plan: str = "dpm_solver_pp_2m", repeats: int = 5,
        seed: int = 0, device: str = "cpu") -> dict[str, Any]:
    """Median sampling seconds of `n` samples (one batch) eager vs compiled, the timed runs interleaved so both see
    the same machine load; the payload write_result takes."""
    m = load(model, device)

    def sample(compile_: bool) -> tuple[float, torch.Tensor]:
        t0 = time.perf_counter()
        x = draw(m, n, nfe=nfe, plan=plan, seed=seed, batch=n, device=device, compile=compile_).x
        return time.perf_counter() - t0, x

    x_eager = sample(False)[1]  # warm-up: allocator, first-call overheads
    row: dict[str, Any] = {"model": model, "n": n, "nfe": nfe, "plan": plan, "device": device}
    try:
        row["compile_s"], x_comp = sample(True)  # the first compiled call pays the compilation
    except Exception as e:  # any failure of the compiler stack is the result to record
        row["error"] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    eager, compiled = [], []
    for _ in range(repeats):
        eager.append(sample(False)[0])
        if "error" not in row:
            compiled.append(sample(True)[0])
    row["eager_s"] = statistics.median(eager)
    row["eager_img_s"] = n / row["eager_s"]
    if "error" not in row:
        row["compiled_s"] = statistics.median(compiled)
        row["compiled_img_s"] = n / row["compiled_s"]
        row["speedup"] = row["eager_s"] / row["compiled_s"]
        row["max_abs_diff"] = float((x_comp - x_eager).abs().max())
        row["compile_s"] -= row["compiled_s"]  # the compilation alone, beyond one compiled run
    torch_info = f"torch {torch.__version__}, {platform.processor() or platform.machine()}"
    if "error" in row:
        summary = [f"torch.compile failed on this machine ({torch_info}): {row['error']}; eager {model} samples "
                   f"at {row['eager_img_s']:.0f} images/s ({nfe} NFE, batch {n})."]
    else:
        summary = [f"{model}, {plan} at {nfe} NFE, batch {n} on {device}: compiled {row['compiled_img_s']:.0f} vs "
                   f"eager {row['eager_img_s']:.0f} images/s, speed ratio {row['speedup']:.2f} (medians of {repeats} "
                   "interleaved runs); "
                   f"the compilation itself took {row['compile_s']:.0f} s once (with what Inductor's on-disk cache "
                   "held; a cold cache takes several times longer); outputs differ by at most "
                   f"{row['max_abs_diff']:.2g} ({torch_info})."]
    cols = ["model", "plan", "NFE", "batch", "eager img/s", "compiled img/s", "speed ratio", "compile s",
            "max abs diff"]
    return {"title": "torch.compile vs eager sampling", "summary": summary,
            "tables": [{"title": f"fs.generate(compile=True) vs eager, same noise, medians of {repeats} interleaved "
                                 "runs",
                        "columns": cols,
                        "rows": [[model, plan, nfe, n, row["eager_img_s"], row.get("compiled_img_s"),
                                  row.get("speedup"), row.get("compile_s"), row.get("max_abs_diff")]]}],
            "raw": row}
