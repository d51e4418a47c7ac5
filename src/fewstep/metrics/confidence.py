"""Classifier confidence and accuracy of generated images under the project's own classifier: mean max-softmax
(the sharpness half of the Inception Score's idea, Salimans et al. 2016) and, for class-conditional samples,
the share classified as the intended label."""

from __future__ import annotations

import torch
from torch import Tensor


@torch.no_grad()
def class_probs(x: Tensor, dataset: str, batch: int = 500, device: str = "cpu") -> Tensor:
    """Softmax class probabilities [n, classes] of images in [-1, 1] (clamped) under the shipped classifier."""
    from .classifier import load_classifier

    net = load_classifier(dataset, str(device))
    if tuple(x.shape[1:]) != net.shape:
        raise ValueError(f"images have shape {tuple(x.shape[1:])} but the {dataset!r} classifier takes {net.shape}")
    x = x.float().clamp(-1, 1)
    return torch.cat([net(x[i:i + batch].to(device)).softmax(-1).cpu() for i in range(0, len(x), batch)])


def confidence(x: Tensor, dataset: str, labels: Tensor | None = None) -> dict[str, float]:
    """{"confidence": mean max-softmax, "accuracy": share whose argmax equals `labels` (when given),
    "class_entropy": entropy (nats) of the predicted-class histogram, log(10) when all classes are equally made}."""
    p = class_probs(x, dataset)
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
