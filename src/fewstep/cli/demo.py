"""`fewstep demo`: sample and measure every method on the shipped models and write demo-report/."""

from __future__ import annotations

import click
import torch
from rich.console import Console
from rich.table import Table

from ..bench.strict_json import dumps
from ..demo import DemoConfig, run
from ..seed import HELD_OUT_SEED
from .options import device_option


@click.command()
@click.option("--out", default="demo-report", show_default=True, help="folder for index.html, index.md, images")
@click.option("--quick", is_flag=True, help="a few samples and NFEs only (for tests and a first look)")
@click.option("--n", type=click.IntRange(min=8), default=None, help="samples per method and NFE (default 500)")
@click.option("--threads", type=click.IntRange(min=1), default=1, show_default=True,
              help="torch CPU threads; 1 is fastest for these tiny models on a shared 2-core machine")
@click.option("--json", "as_json", is_flag=True, help="print the measured rows as JSON")
@click.option("--seed", default=HELD_OUT_SEED, show_default=True, type=int,
              help="base noise seed; the default is noise no shipped searched plan was fit on")
@device_option
def demo(out: str, quick: bool, n: int | None, threads: int, as_json: bool, device: str, seed: int) -> None:
    """Run the demo on the shipped models (no training) and write a report."""
    torch.set_grad_enabled(False)
    torch.set_num_threads(threads)
    cfg = DemoConfig.quick(out) if quick else DemoConfig(out=out)
    cfg.device, cfg.seed = device, seed
    if n is not None:
        cfg.n = n
    result = run(cfg, progress=not as_json)
    if as_json:
        click.echo(dumps(result, indent=1))
        return
    t = Table(title=f"fewstep demo (n={cfg.n}, noise floor FD {result['noise_floor']:.3g})")
    for col in ("method", "NFE", "FD", "FD/floor", "confidence", "images/s"):
        t.add_column(col, justify="right" if col != "method" else "left")
    for r in result["rows"]:
        t.add_row(r["method"], str(r["nfe"]), f"{r['fd']:.3g}", f"{r['fd_over_floor']:.2f}", f"{r['confidence']:.3f}",
                  f"{r['images_per_s']:.0f}")
    console = Console()
    console.print(t)
    console.print(f"report: [bold]{result['html']}[/bold] (and {result['markdown']}), {result['seconds']:.0f} s")
