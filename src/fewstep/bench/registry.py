"""Every benchmark in one list: its `fewstep bench` subcommand, its section's place in BENCHMARKS.md, and what it
adds to the demo (solver baselines, the paper caption of each method). Adding a benchmark is one entry here.

Torch-free on purpose: `fewstep --help` and `fewstep bench --help` read it.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Benchmark:
    """name: the subcommand and the stem of bench-results/<name>.json; command: "module:attr" of its click command
    (None: a section whose result another command writes); help: its line in `fewstep bench --help`; baselines:
    the demo's hand-made solvers (plan names); papers: the demo report's caption of each method it measures;
    cpu_only: its comparisons run on the CPU only (`fewstep bench all --device` runs it there); demo: "module:attr" of
    its demo section, a function (DemoConfig) -> fewstep.report.rows.DemoSection | None that samples the shipped
    models (no training) and writes its grids under <cfg.out>/grids/."""

    name: str
    command: str | None = None
    help: str = ""
    baselines: tuple[str, ...] = ()
    papers: dict[str, str] = field(default_factory=dict)
    cpu_only: bool = False
    demo: str | None = None


BENCHMARKS: tuple[Benchmark, ...] = (
    Benchmark("foundation", "fewstep.cli.bench_foundation:foundation",
              "The shipped teacher's FD next to the real-data noise floor.", papers={
        "teacher": "The teacher at 35-NFE Heun (EDM's default): the quality the few-step methods aim for."}),
    Benchmark("solvers", "fewstep.cli.bench_solvers:solvers",
              "USF plans vs diffusers schedulers at NFE 3-10.",
              baselines=("ddim", "dpm_solver_pp_2m", "dpm_solver_pp_3m", "unipc_bh2", "deis_3", "ipndm", "heun"),
              papers={
        "ddim": "DDIM (Song et al., ICLR 2021): the first-order exponential integrator.",
        "dpm_solver_pp_2m": "DPM-Solver++(2M) (Lu et al., 2022): second-order multistep, data prediction.",
        "dpm_solver_pp_3m": "DPM-Solver++(3M) (Lu et al., 2022): third-order multistep, data prediction.",
        "unipc_bh2": "UniPC-bh2 (Zhao et al., NeurIPS 2023): multistep predictor with the UniC corrector at no extra "
                     "NFE.",
        "deis_3": "DEIS-tAB3 (Zhang & Chen, ICLR 2023): third-order polynomial extrapolation of eps.",
        "ipndm": "iPNDM (Zhang & Chen 2023; Liu et al. 2022): fourth-order linear multistep with warm start.",
        "heun": "Heun (Karras et al., NeurIPS 2022): EDM's second-order sampler, two evaluations per step."},
              cpu_only=True),
    Benchmark("search", "fewstep.cli.bench_search:search",
              "S^3 searched plans vs hand-made plans, held-out noise.", papers={
        "searched": "S^3 (Liu et al., ICLR 2024): per-step solver decisions searched under the NFE budget with a "
                    "learned ranking predictor."}, cpu_only=True),
    Benchmark("consistency", "fewstep.cli.bench_consistency:consistency",
              "CD / iCT at 1-2 steps, training curves, editing.", papers={
        "digits-cd": "Consistency distillation (Song et al., ICML 2023): a student that maps any noisy point on the "
                     "teacher's ODE trajectory to its end, in one step (Algorithm 1 for more steps).",
        "digits-ict": "Improved consistency training (Song & Dhariwal, ICLR 2024): the same model trained from data "
                      "alone, no teacher."}, cpu_only=True),
    Benchmark("latent", "fewstep.cli.bench_latent:latent",
              "Latent stack: autoencoder, latent teacher vs guidance, plans vs diffusers EDM.", papers={
        "mnist-ldm": "Latent diffusion (Rombach et al., CVPR 2022) with EDM training: a class-conditional UNet2DModel "
                     "on a KL autoencoder's 4x8x8 latents, classifier-free guidance (Ho & Salimans 2022)."}),
    Benchmark("lcm", "fewstep.cli.bench_lcm:lcm",
              "Latent consistency models vs their CFG teacher: steps, guidance sweep, LCM-LoRA.", papers={
        "mnist-lcm": "Latent consistency distillation (Luo et al. 2023): a student of mnist-ldm's classifier-free-"
                     "guided PF-ODE that takes the guidance scale as an input, sampled in 1-8 steps (LCM's multistep "
                     "sampler)."}, demo="fewstep.bench.lcm:demo_section"),
    Benchmark("flow", "fewstep.cli.bench_flow:flow",
              "Latent flow matching: dopri5, fewstep plans vs diffusers flow schedulers, OT vs independent.", papers={
        "mnist-lfm": "Flow matching in latent space (Dao et al. 2023): a class-conditional velocity UNet on mnist-ae's "
                     "latents (rectified path, Liu et al. 2023), guided by CFG, read as a denoiser by fewstep plans."},
              demo="fewstep.bench.flow:demo_section"),
    Benchmark("ufogen", "fewstep.cli.bench_ufogen:ufogen",
              "UFOGen one-step diffusion-GAN vs teacher / CD / iCT at 1 step, curve, gap ablation, img2img.", papers={
        "digits-ufogen": "UFOGen (Xu et al., CVPR 2024): a one-step generator initialised from the teacher and "
                         "trained with a discriminator on the noised marginal q(x_{t-gap}) plus a reconstruction "
                         "term; more steps re-noise its output."}, cpu_only=True,
              demo="fewstep.bench.ufogen:demo_section"),
    Benchmark("boundary", "fewstep.cli.bench_boundary:boundary",
              "BoundaryDiffusion: mixing step, SVMs in x_t and h, one-step edits vs a learned direction.", papers={
        "boundary": "BoundaryDiffusion (Zhu et al., NeurIPS 2023): learning-free editing of a frozen model, a linear "
                    "boundary at the mixing step crossed in one step."}, cpu_only=True,
              demo="fewstep.bench.boundary:demo_section"),
    Benchmark("quant", "fewstep.cli.bench_quant:quant",
              "TFMQ-DM vs Q-Diffusion post-training quantization; real int8 on the CPU.", papers={
        "quantized": "TFMQ-DM (Huang et al., CVPR 2024): post-training quantization that keeps the temporal features "
                     "(TIAR, per-step activation parameters, the journal version's temporal cache)."},
              cpu_only=True, demo="fewstep.bench.quant:demo_section"),
    Benchmark("compile", "fewstep.cli.bench_compile:compile_",
              "torch.compile vs eager sampling speed of the shipped teacher (one run)."),
    Benchmark("bridge"),
    Benchmark("demo"),
)


def commands() -> dict[str, str]:
    """Subcommand -> "module:attr" of every runnable benchmark, in registry order."""
    return {b.name: b.command for b in BENCHMARKS if b.command}


def cpu_only() -> set[str]:
    """The runnable benchmarks whose comparisons run on the CPU only."""
    return {b.name for b in BENCHMARKS if b.command and b.cpu_only}


def helps() -> dict[str, str]:
    """Subcommand -> its one-line help, for the runnable benchmarks."""
    return {b.name: b.help for b in BENCHMARKS if b.command}


def demos() -> list[str]:
    """The "module:attr" of every method's demo section, in registry order."""
    return [b.demo for b in BENCHMARKS if b.demo]


def order() -> list[str]:
    """The order of the sections of BENCHMARKS.md (result-file stems)."""
    return [b.name for b in BENCHMARKS]


def baselines() -> tuple[str, ...]:
    """The demo's hand-made solvers, every benchmark's in turn."""
    return tuple(s for b in BENCHMARKS for s in b.baselines)


def papers() -> dict[str, str]:
    """Method -> the demo report's caption, from every benchmark."""
    return {k: v for b in BENCHMARKS for k, v in b.papers.items()}
