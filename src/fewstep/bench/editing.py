"""Zero-shot editing benchmarks of a consistency model (CM Algorithm 4) on held-out digits: inpainting (label kept
under the classifier), 4x4 -> 8x8 super-resolution (FD vs bicubic), and colorization of coloured digits."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .. import data as fsdata
from ..edit import colorize, inpaint, superres
from ..edit.transforms import to_gray
from ..metrics import confidence, fd

DATASET = "digits"


def edit_schedules(T: float) -> tuple[list[float], ...]:
    """1, 2 and 4 steps of Alg. 4, 8 steps on a roughly geometric ladder down to 0.1, and (last) 21 calls that
    resample 4 times at each of 5 levels from 2 down to 0.3."""
    return ([T], [T, 0.5], [T, 2.0, 0.5, 0.1], [T, 20.0, 5.0, 2.0, 1.0, 0.5, 0.2, 0.1], [T] + [float(v) for v in
            torch.logspace(math.log10(2.0), math.log10(0.3), 5) for _ in range(4)])


def _gen(*key: int) -> torch.Generator:
    """A generator of its own for each (task, schedule, repeat), so adding a schedule changes no other number."""
    return torch.Generator().manual_seed(int("".join(f"{k:03d}" for k in key)))


def editing(cm: Any, n: int | None = None, repeats: int = 3) -> dict[str, Any]:
    """Inpainting (lower / right half masked) label kept under the classifier, the mean over `repeats` noise draws;
    4x4 -> 8x8 super-resolution FD vs bicubic; on the first n (default all) held-out (test split) digits, with each
    of `edit_schedules`, and for inpainting the best of 4 21-call chains by self-consistency
    (fewstep.edit.select_consistent, 100 calls)."""
    test = fsdata.get(DATASET, split="test")
    x, y = test.x[:n], test.y[:n]
    schedules = edit_schedules(float(cm.sigma_max))
    out: dict[str, Any] = {"n": len(x), "repeats": repeats,
                           "real_accuracy": confidence(x, DATASET, labels=y)["accuracy"]}

    def kept(mask: Tensor, steps: list[float], key: tuple[int, ...], **kw: Any) -> float:
        return sum(confidence(inpaint(cm, x, mask, steps, generator=_gen(*key, r), **kw), DATASET, labels=y)[
            "accuracy"] for r in range(repeats)) / repeats

    for m, (name, sl) in enumerate((("lower", (slice(None), slice(None), slice(4, 8), slice(None))),
                                    ("right", (slice(None), slice(None), slice(None), slice(4, 8))))):
        mask = torch.zeros(1, *x.shape[1:])
        mask[sl] = 1
        for i, steps in enumerate(schedules):
            out[f"inpaint_{name}_{len(steps)}step_label_kept"] = kept(mask, steps, (1, m, i))
        # best of 4 chains of the 21-call schedule by self-consistency (4 x 21 + 4 x 4 = 100 calls)
        out[f"inpaint_{name}_21step_x4_label_kept"] = kept(mask, schedules[-1], (2, m, 0), candidates=4)
    low = F.avg_pool2d(x, 2)
    bicubic = F.interpolate(low, scale_factor=2, mode="bicubic", align_corners=False).clamp(-1, 1)
    out["superres_fd_bicubic"] = fd(bicubic, DATASET)
    out["superres_fd_nearest"] = fd(F.interpolate(low, scale_factor=2, mode="nearest"), DATASET)
    for i, steps in enumerate(schedules):
        out[f"superres_fd_cm_{len(steps)}step"] = fd(superres(cm, low, 2, steps, generator=_gen(3, 0, i)), DATASET)
    out["superres_fd_real"] = fd(x, DATASET)
    return out


def colorization(cm: Any, n: int | None = None) -> dict[str, Any]:
    """Colorize the luma of held-out coloured digits with a colour CM: FD on the digits_color classifier against
    the real colour reference (gray copied to 3 channels as the baseline), the label kept, and the largest change
    of the luma, which Alg. 4 must keep exactly; the schedules of `edit_schedules`."""
    name = "digits_color"
    test = fsdata.get(name, split="test")
    x, y = test.x[:n], test.y[:n]
    gray = to_gray(x)
    T = float(cm.sigma_max)
    gray3 = gray.expand(-1, 3, -1, -1)
    out: dict[str, Any] = {"n": len(x), "fd_real": fd(x, name), "fd_gray": fd(gray3, name),
                           "label_kept_real": confidence(x, name, labels=y)["accuracy"],
                           "label_kept_gray": confidence(gray3, name, labels=y)["accuracy"]}
    for i, steps in enumerate(edit_schedules(T)):
        r = colorize(cm, gray, steps, generator=_gen(4, 0, i))
        k = f"{len(steps)}step"
        out[f"fd_cm_{k}"] = fd(r, name)
        out[f"label_kept_cm_{k}"] = confidence(r, name, labels=y)["accuracy"]
        out[f"luma_max_change_cm_{k}"] = (to_gray(r) - gray).abs().max().item()
    return out


def colour_strip(cm: Any, k: int = 8) -> Tensor:
    """Rows for the picture: real colour digits, their luma, 1-step and 2-step colorizations."""
    x = fsdata.get("digits_color", split="test").x[:k]
    gray = to_gray(x)
    g = torch.Generator().manual_seed(0)
    T = float(cm.sigma_max)
    return torch.cat([x, gray.expand(-1, 3, -1, -1), colorize(cm, gray, [T], generator=g),
                      colorize(cm, gray, [T, 0.5], generator=g)])
