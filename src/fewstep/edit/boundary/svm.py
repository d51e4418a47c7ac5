"""Linear boundaries: a linear SVM per latent space (x_t and the bottleneck h) at the mixing step, and the small file
that holds them (safetensors for the normals, JSON for the rest).

Zhu et al. 2023 (BoundaryDiffusion) Sec. 3.2: `sklearn.svm.SVC(kernel="linear")` on the inverted latents of
labelled images; the hyperplane is w.z + b = 0 and the signed distance (w.z + b) / ||w|| keeps the intercept b
(the official code drops it, so its "distance" is measured from a plane through the origin).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from ...errors import CheckpointError
from ...io import atomic_write, atomic_write_text
from .latents import signed_distance

SPACES = ("x", "h")


@dataclass
class Hyperplane:
    """w.z + b = 0 in one space; `spread`: std of the training points' signed distances (the unit of `distance`
    when apply(..., units="std")); accuracies on the fitting points and on the held-out part, if any."""

    w: Tensor
    b: float
    spread: float
    train_accuracy: float
    heldout_accuracy: float | None = None

    def distance(self, z: Tensor) -> Tensor:
        """The true signed distance (with the intercept) of each z [B, ...]."""
        return signed_distance(z, self.w, self.b)


def fit_svm(z: Tensor, labels: Tensor, C: float = 1.0, heldout: tuple[Tensor, Tensor] | None = None) -> Hyperplane:
    """A linear SVM (scikit-learn SVC, kernel "linear", as the official code) on flattened z [N, ...] with binary
    labels (1 = the attribute's positive side); returns the hyperplane with its true signed distance."""
    from sklearn.svm import SVC

    y = _binary(labels)
    X = z.flatten(1).to(torch.float64).cpu().numpy()
    clf = SVC(kernel="linear", C=C).fit(X, y)
    w = torch.from_numpy(np.array(clf.coef_, dtype=np.float64).reshape(-1))
    b = float(np.asarray(clf.intercept_).reshape(-1)[0])
    dist = signed_distance(z, w, b)
    acc = ((dist > 0).long().numpy() == y).mean()
    ho = None
    if heldout is not None:
        zh, yh = heldout
        ho = float(((signed_distance(zh, w, b) > 0).long().numpy() == _binary(yh)).mean())
    return Hyperplane(w.float(), b, float(dist.std()), float(acc), ho)


def _binary(labels: Tensor) -> np.ndarray:
    y = torch.as_tensor(labels).reshape(-1).long().cpu().numpy()
    if not set(np.unique(y)) <= {0, 1}:
        raise ValueError(f"labels must be binary (0 = negative side, 1 = positive side), got values {np.unique(y)}")
    if len(np.unique(y)) < 2:
        raise ValueError("labels hold one class only; a boundary needs examples on both sides")
    return y


@dataclass
class Boundary:
    """A BoundaryDiffusion boundary: the mixing step `sigma`, the edit plan that reaches it (name, nfe, sigma_min,
    grid), the hyperplanes in x_t (`x`) and in the bottleneck (`h`, None without a UNet), the space `apply` moves in
    by default ("x", "h" or "both"), and what it was fitted on (`info`: attribute, n, seconds, ...)."""

    sigma: float
    plan: dict[str, Any]
    x: Hyperplane
    h: Hyperplane | None = None
    space: str = "both"
    info: dict[str, Any] = field(default_factory=dict)

    def save(self, path: str | Path) -> Path:
        """Write `path` (.safetensors: the normals) and `path` with .json (everything else)."""
        from safetensors.torch import save_file

        path = Path(path).with_suffix(".safetensors")
        tensors = {f"w_{k}": getattr(self, k).w.contiguous() for k in SPACES if getattr(self, k) is not None}
        atomic_write(path, lambda tmp: save_file(tensors, tmp))
        meta = {"kind": "boundary", "sigma": self.sigma, "plan": self.plan, "space": self.space, "info": self.info}
        for k in SPACES:
            hp = getattr(self, k)
            meta[k] = None if hp is None else {key: v for key, v in asdict(hp).items() if key != "w"}
        atomic_write_text(path.with_suffix(".json"), json.dumps(meta, indent=1))
        return path

    @classmethod
    def load(cls, path: str | Path) -> Boundary:
        """Read a boundary written by `save` (either file's path)."""
        from safetensors.torch import load_file

        path = Path(path).with_suffix(".safetensors")
        meta_path = path.with_suffix(".json")
        if not path.is_file() or not meta_path.is_file():
            raise CheckpointError(f"boundary files {path} and {meta_path} must both exist (written by Boundary.save)")
        meta = json.loads(meta_path.read_text())
        if meta.get("kind") != "boundary":
            raise CheckpointError(f"{meta_path} is not a boundary file (kind={meta.get('kind')!r})")
        tensors = load_file(str(path))
        planes = {k: None if meta[k] is None else Hyperplane(w=tensors[f"w_{k}"], **meta[k]) for k in SPACES}
        return cls(float(meta["sigma"]), meta["plan"], planes["x"], planes["h"], meta["space"], meta.get("info", {}))
