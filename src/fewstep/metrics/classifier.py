"""The project's own feature net: a small CNN classifier per image data set, trained on its "train" split.

Its penultimate-layer activations are the feature space of FD-digits (the Fréchet distance of Heusel et al. 2017
on a domain classifier instead of Inception-v3, as in "FID for MNIST" practice), and its softmax gives the
confidence (mean max-softmax, the sharpness half of the Inception Score's idea, Salimans et al. 2016) and the
accuracy of class-conditional samples. Weights ship in `files/<name>-classifier.safetensors` with a JSON
manifest (command, seed, commit, test accuracy); `fewstep metrics train-classifier NAME` retrains one.
"""

from __future__ import annotations

import functools
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .. import data
from ..errors import CheckpointError
from ..io import atomic_write_text, git_commit, load_state, read_config, save_model

FILES = Path(__file__).resolve().parent / "files"

# Training recipes, one per data set; each is recorded in the shipped manifest so a retrain reproduces it.
RECIPES: dict[str, dict[str, Any]] = {
    "digits": {"net": {"in_channels": 1, "size": 8, "widths": [32, 64, 128], "feat_dim": 128},
               "epochs": 40, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 1, "seed": 0},
    "mnist5k": {"net": {"in_channels": 1, "size": 28, "widths": [16, 32, 64], "feat_dim": 128},
                "epochs": 25, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "seed": 0},
    "fashion": {"net": {"in_channels": 1, "size": 28, "widths": [16, 32, 64], "feat_dim": 128},
                "epochs": 4, "batch": 128, "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "seed": 0},
    "digits_color": {"net": {"in_channels": 3, "size": 8, "widths": [32, 64, 128], "feat_dim": 128},
                     "epochs": 40, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 1, "recolor": True,
                     "seed": 0},
    # The perceptual nets of fewstep.metrics.perceptual: trained apart from the FD nets (other seed and widths),
    # so a distillation loss on them is not the evaluation's own feature space.
    "digits_perceptual": {"data": "digits", "net": {"in_channels": 1, "size": 8, "widths": [24, 48, 96],
                                                    "feat_dim": 64},
                          "epochs": 40, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 1, "seed": 1},
    "mnist5k_perceptual": {"data": "mnist5k", "net": {"in_channels": 1, "size": 28, "widths": [12, 24, 48],
                                                      "feat_dim": 64},
                           "epochs": 15, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 2, "seed": 1},
    "digits_color_perceptual": {"data": "digits_color", "net": {"in_channels": 3, "size": 8, "widths": [24, 48, 96],
                                                                "feat_dim": 64},
                                "epochs": 40, "batch": 64, "lr": 3e-3, "weight_decay": 5e-4, "shift": 1, "seed": 1},
}


class FeatureCNN(nn.Module):
    """conv-BN-ReLU stages with 2x max-pooling between them, global average pooling, a `feat_dim` ReLU layer
    (the FD feature space) and a linear head over `num_classes`."""

    def __init__(self, in_channels: int, size: int, widths: list[int], feat_dim: int = 128,
                 num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c, s = in_channels, size
        for i, w in enumerate(widths):
            if i > 0 and s >= 4:
                layers.append(nn.MaxPool2d(2))
                s //= 2
            layers += [nn.Conv2d(c, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU()]
            c = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.feat = nn.Sequential(nn.Linear(c, feat_dim), nn.ReLU())
        self.head = nn.Linear(feat_dim, num_classes)
        self.shape = (in_channels, size, size)

    def stages(self, x: Tensor) -> list[Tensor]:
        """The activation map after each conv-BN-ReLU stage (the layers LPIPS compares)."""
        out = []
        for layer in self.body:
            x = layer(x)
            if isinstance(layer, nn.ReLU):
                out.append(x)
        return out

    def features(self, x: Tensor) -> Tensor:
        """Penultimate-layer features [B, feat_dim] of images in [-1, 1]."""
        return self.feat(self.body(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


def random_shift(x: Tensor, shift: int, generator: torch.Generator) -> Tensor:
    """Translate each image by an integer offset in [-shift, shift]^2 (edge padding), the training augmentation."""
    if shift <= 0:
        return x
    B, _, H, W = x.shape
    padded = F.pad(x, (shift,) * 4, mode="replicate")
    off = torch.randint(0, 2 * shift + 1, (B, 2), generator=generator)
    out = torch.empty_like(x)
    for dy in range(2 * shift + 1):
        for dx in range(2 * shift + 1):
            m = (off[:, 0] == dy) & (off[:, 1] == dx)
            if m.any():
                out[m] = padded[m, :, dy:dy + H, dx:dx + W]
    return out


def random_recolor(x: Tensor, generator: torch.Generator) -> Tensor:
    """Re-tint colour images within the family a*fg + (1-a)*bg of `digits_color`: mixing channels with a random
    row-stochastic matrix and flipping channels (c -> 1 - c) maps every (fg, bg) pair to another valid pair."""
    B, C = x.shape[:2]
    m = torch.rand(B, C, C, generator=generator) ** 4
    m = m / m.sum(-1, keepdim=True)
    u = torch.einsum("bij,bjhw->bihw", m, (x + 1) / 2)
    flip = torch.rand(B, C, 1, 1, generator=generator) < 0.5
    return torch.where(flip, 1 - u, u) * 2 - 1


@torch.no_grad()
def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch: int = 1024) -> float:
    """Top-1 accuracy of `model` on (x, y)."""
    model.eval()
    hits = sum((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum().item() for i in range(0, len(x), batch))
    return hits / len(x)


def train_classifier(name: str, recipe: dict[str, Any] | None = None, verbose: bool = False
                     ) -> tuple[FeatureCNN, dict[str, Any]]:
    """Train the classifier of data set `name` on its train split with `recipe` (default RECIPES[name]);
    returns the model (eval mode) and a manifest with the held-out test accuracy."""
    if recipe is None:
        if name not in RECIPES:
            raise KeyError(f"no classifier recipe for data set {name!r}; known: {', '.join(RECIPES)}")
        recipe = RECIPES[name]
    source = recipe.get("data", name)  # a perceptual net names the data set it learns from
    train, test = data.get(source, "train"), data.get(source, "test")
    if train.y is None:
        raise ValueError(f"data set {name!r} has no labels; a classifier needs a labelled data set")
    g = torch.Generator().manual_seed(recipe["seed"])
    torch.manual_seed(recipe["seed"])
    model = FeatureCNN(**recipe["net"], num_classes=train.num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=recipe["lr"], weight_decay=recipe["weight_decay"])
    steps = recipe["epochs"] * ((len(train) + recipe["batch"] - 1) // recipe["batch"])
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe["lr"], total_steps=steps, pct_start=0.15)
    t0 = time.perf_counter()
    for epoch in range(recipe["epochs"]):
        model.train()
        perm = torch.randperm(len(train), generator=g)
        for i in range(0, len(train), recipe["batch"]):
            idx = perm[i:i + recipe["batch"]]
            xb = random_shift(train.x[idx], recipe["shift"], g)
            if recipe.get("recolor"):
                xb = random_recolor(xb, g)
            loss = F.cross_entropy(model(xb), train.y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
        if verbose:
            print(f"epoch {epoch + 1}/{recipe['epochs']} loss {loss.item():.4f}", file=sys.stderr)
    seconds = time.perf_counter() - t0
    manifest = {
        "data": name, "recipe": recipe, "num_classes": train.num_classes,
        "train_accuracy": accuracy(model, train.x, train.y), "test_accuracy": accuracy(model, test.x, test.y),
        "n_train": len(train), "n_test": len(test), "train_seconds": round(seconds, 1),
        "threads": torch.get_num_threads(), "commit": git_commit(), "seed": recipe["seed"],
        "command": command(name),
    }
    return model.eval(), manifest


def command(name: str) -> str:
    """The command that retrains data set `name`'s classifier (recorded in its manifest)."""
    return f"fewstep metrics train-classifier {name}"


def paths(name: str, root: Path | None = None) -> tuple[Path, Path]:
    """(weights, manifest) paths of data set `name`'s classifier."""
    root = FILES if root is None else Path(root)
    return root / f"{name}-classifier.safetensors", root / f"{name}-classifier.json"


def save_classifier(model: FeatureCNN, manifest: dict[str, Any], root: Path | None = None) -> Path:
    """Write the weights (config in the safetensors metadata) and the manifest next to them, atomically."""
    weights, man = paths(manifest["data"], root)
    config = {"kind": "classifier", "net": {"class": "feature_cnn", "kwargs": manifest["recipe"]["net"]},
              "num_classes": manifest["num_classes"], "data": manifest["data"]}
    save_model(weights, model, config)
    atomic_write_text(man, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return weights


@functools.lru_cache(maxsize=8)
def load_classifier(name: str, device: str = "cpu") -> FeatureCNN:
    """The shipped classifier of data set `name` (eval mode, frozen), cached per (name, device)."""
    weights, _ = paths(name)
    if not weights.is_file():
        known = sorted(p.name.removesuffix("-classifier.safetensors") for p in FILES.glob("*-classifier.safetensors"))
        raise FileNotFoundError(f"no shipped classifier for data set {name!r} (have: {', '.join(known) or 'none'}); "
                                f"train one with `{command(name)}`")
    config = read_config(weights)
    if config.get("kind") != "classifier":
        raise CheckpointError(f"{weights} is a {config.get('kind')!r} file, not a classifier")
    model = FeatureCNN(**config["net"]["kwargs"], num_classes=config["num_classes"])
    model.load_state_dict(load_state(weights))
    for p in model.parameters():
        p.requires_grad_(False)
    return model.eval().to(device)


def manifest(name: str) -> dict[str, Any]:
    """The recorded manifest (recipe, command, seed, commit, accuracies) of a shipped classifier."""
    _, man = paths(name)
    if not man.is_file():
        raise FileNotFoundError(f"no manifest {man}; retrain with `{command(name)}`")
    return json.loads(man.read_text())


def retrain(name: str, root: Path | None = None, verbose: bool = False) -> dict[str, Any]:
    """Retrain data set `name`'s classifier from its recorded recipe (or the default) and save it under `root`."""
    try:
        recipe = manifest(name)["recipe"]
    except FileNotFoundError:
        recipe = None
    model, man = train_classifier(name, recipe, verbose=verbose)
    save_classifier(model, man, root)
    load_classifier.cache_clear()
    return man


@torch.no_grad()
def class_probs(x: Tensor, dataset: str, batch: int = 500, device: str = "cpu") -> Tensor:
    """Softmax class probabilities [n, classes] of images in [-1, 1] (clamped) under the shipped classifier."""
    net = load_classifier(dataset, str(device))
    if tuple(x.shape[1:]) != net.shape:
        raise ValueError(f"images have shape {tuple(x.shape[1:])} but the {dataset!r} classifier takes {net.shape}")
    x = x.float().clamp(-1, 1)
    return torch.cat([net(x[i:i + batch].to(device)).softmax(-1).cpu() for i in range(0, len(x), batch)])


def confidence(x: Tensor, dataset: str, labels: Tensor | None = None, device: str = "cpu") -> dict[str, float]:
    """{"confidence": mean max-softmax, "accuracy": share whose argmax equals `labels` (when given),
    "class_entropy": entropy (nats) of the predicted-class histogram, log(10) when all classes are equally made}."""
    p = class_probs(x, dataset, device=device)
    pred = p.argmax(1)
    hist = torch.bincount(pred, minlength=p.shape[1]).double() / len(pred)
    out = {"confidence": p.max(1).values.mean().item(),
           "class_entropy": -(hist[hist > 0] * hist[hist > 0].log()).sum().item()}
    if labels is not None:
        labels = torch.as_tensor(labels).long().reshape(-1)
        if labels.numel() == 1:
            labels = labels.expand(len(x))
        if len(labels) != len(x):
            raise ValueError(f"got {len(labels)} labels for {len(x)} samples; give one label or one per sample")
        out["accuracy"] = (pred == labels.cpu()).double().mean().item()
    return out
