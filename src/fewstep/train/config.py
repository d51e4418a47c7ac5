"""What a training run is, as data (no torch import, so `fewstep --help` stays instant): TrainConfig, and `option`,
the one declaration of a config field's command-line option (name, type, default, help) that
fewstep.cli.options.config_options turns into a click option."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

LOSS_NAMES = ("edm", "vp", "flow")  # fewstep.train.losses.LOSSES's keys (a test keeps them equal)


def option(default: Any = None, help: str = "", *, factory: Any = None, flag: str | None = None,
           choices: tuple[str, ...] | None = None, min: float | None = None, min_open: bool = False) -> Any:
    """A dataclass field that also declares its command-line option: `help`, the option's `flag` (default
    --name-with-dashes), `choices`, and a lower bound `min` (exclusive when `min_open`)."""
    meta = {"help": help, "flag": flag, "choices": choices, "min": min, "min_open": min_open}
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


@dataclass
class TrainConfig:
    """Hyper-parameters of one denoiser training run (all JSON-serialisable)."""

    steps: int = option(4000)
    batch: int = option(128, "global batch size (split across DDP ranks)")
    lr: float = option(1e-3)
    weight_decay: float = option(0.0)
    warmup: int = option(200, "linear LR warm-up steps")
    cooldown: int = option(0, "decay the LR linearly to 0 over the last N steps; a run's checkpoint from before the "
                              "cool-down resumes into one exactly")  # warmup-stable-decay (0 = constant after warm-up)
    ema_decay: float = option(0.999, "EMA of the weights kept as the artefact")
    average_from: int | None = option(None, "save the uniform mean of the EMA weights taken every --average-every "
                                            "steps from this step on, instead of the last EMA (checkpoint averaging)",
                                      min=0)
    average_every: int = option(500, "steps between averaged snapshots", min=1)
    grad_clip: float = option(1.0)
    loss: str = option("edm", choices=LOSS_NAMES)
    loss_kwargs: dict[str, Any] = option(factory=dict)
    label_dropout: float = option(0.1, "probability of the null label in training (CFG); unconditional samples need "
                                       "more of it (digits-edm: 0.5); 1 trains only the unconditional branch (how "
                                       "`fewstep sample` and the benchmark draw a distilled student)")
    ckpt_every: int = option(500, "write the training checkpoint every N steps")
    log_every: int = option(25)
    seed: int = option(0)
    progress: bool = option(True)

    def __post_init__(self) -> None:
        for name in ("steps", "batch", "ckpt_every", "log_every", "average_every"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.lr <= 0 or not 0 <= self.ema_decay < 1 or not 0 <= self.label_dropout <= 1 or self.warmup < 0:
            raise ValueError("need lr > 0, 0 <= ema_decay < 1, 0 <= label_dropout <= 1 (1 = train only the "
                             "unconditional branch) and warmup >= 0")
        if not 0 <= self.cooldown <= self.steps:
            raise ValueError(f"cooldown must lie in [0, steps={self.steps}], got {self.cooldown}")
        if self.average_from is not None and self.average_from < 0:
            raise ValueError(f"average_from must be a step >= 0 (or None for the EMA alone), got {self.average_from}")
        if self.loss not in LOSS_NAMES:
            raise KeyError(f"unknown loss {self.loss!r}; known: {', '.join(sorted(LOSS_NAMES))}")
