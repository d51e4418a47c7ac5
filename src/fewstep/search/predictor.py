"""The S^3 score predictor: per-step plan features -> small LSTM, masked mean-pooled -> MLP -> a scalar rank.

Liu et al. (2024, S^3, Sec. 4.2) use a light predictor to choose which schedules are worth evaluating; the
architecture and the pairwise ranking hinge loss follow the same authors' OMS-DPM predictor (Liu et al. 2023,
`predictor/modules/predictor.py`): embed each step, run an LSTM, L2-normalise and mean-pool, regress with an MLP.
Lower output = better plan (the search minimises its score).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn


def pad(features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Stack variable-length [L_i, F] step features into [B, L_max, F] and a [B, L_max] validity mask."""
    if not features:
        raise ValueError("no plans to featurise")
    L = max(f.shape[0] for f in features)
    F = features[0].shape[1]
    out = torch.zeros(len(features), L, F, dtype=torch.float32)
    mask = torch.zeros(len(features), L, dtype=torch.bool)
    for i, f in enumerate(features):
        out[i, : f.shape[0]] = f.to(torch.float32)
        mask[i, : f.shape[0]] = True
    return out, mask


class Predictor(nn.Module):
    """r(plan) = MLP(mean_l normalize(LSTM(embed(step_l)))) (OMS-DPM, Liu et al. 2023, Sec. 3.3)."""

    def __init__(self, n_features: int, hidden: int = 64) -> None:
        super().__init__()
        self.embed = nn.Sequential(nn.Linear(n_features, hidden), nn.ReLU(), nn.Linear(hidden, hidden))
        self.lstm = nn.LSTM(hidden, hidden, batch_first=True)
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h, _ = self.lstm(self.embed(x))
        h = nn.functional.normalize(h, dim=-1) * mask[..., None]
        pooled = h.sum(1) / mask.sum(1, keepdim=True).clamp_min(1)
        return self.head(pooled).squeeze(-1)


def ranking_loss(pred: Tensor, target: Tensor, margin: float = 0.1, threshold: float = 0.0) -> Tensor:
    """Pairwise hinge: for every pair with target_j - target_i > threshold, penalise max(0, margin - (r_j - r_i))
    (OMS-DPM's compare loss; targets are log-scores, lower is better)."""
    dt = target[None, :] - target[:, None]  # [i, j] = t_j - t_i
    dp = pred[None, :] - pred[:, None]
    keep = dt > threshold
    if not keep.any():
        return pred.sum() * 0.0
    return torch.relu(margin - dp[keep]).mean()


def fit(features: Sequence[Tensor], scores: Sequence[float], seed: int = 0, epochs: int = 200,
        hidden: int = 64, lr: float = 3e-3, batch: int = 128) -> tuple[Predictor, list[float]]:
    """Train a fresh predictor on evaluated plans; returns it and the per-epoch loss (deterministic given seed).

    Non-finite scores (diverged plans) are clamped to just above the worst finite one, so they still rank last."""
    t = _targets(scores)
    x, mask = pad(features)
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = Predictor(x.shape[-1], hidden)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    n = len(t)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        total = 0.0
        for k in range(0, n, batch):
            idx = perm[k:k + batch]
            loss = ranking_loss(model(x[idx], mask[idx]), t[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(idx)
        losses.append(total / n)
    return model.eval(), losses


@torch.no_grad()
def predict(model: Predictor, features: Sequence[Tensor], batch: int = 1024) -> Tensor:
    """Predicted ranks (lower = better) for a list of plan features."""
    out = []
    for k in range(0, len(features), batch):
        x, mask = pad(features[k:k + batch])
        out.append(model(x, mask))
    return torch.cat(out)


def kendall_tau(pred: Sequence[float] | Tensor, actual: Sequence[float] | Tensor) -> float:
    """Kendall's tau between predicted and actual scores (scipy.stats.kendalltau); nan if undefined."""
    from scipy.stats import kendalltau

    a = _targets(actual).tolist()
    p = torch.as_tensor(pred, dtype=torch.float64).tolist()
    if len(a) < 3:
        return float("nan")
    tau = kendalltau(p, a).statistic
    return float(tau) if tau == tau else float("nan")


def _targets(scores: Sequence[float] | Tensor) -> Tensor:
    """log-scores with non-finite ones replaced by (worst finite + 1)."""
    s = torch.as_tensor(list(scores) if not torch.is_tensor(scores) else scores, dtype=torch.float64)
    finite = torch.isfinite(s) & (s >= 0)
    t = torch.full_like(s, 0.0)
    if finite.any():
        t[finite] = s[finite].clamp_min(1e-30).log()
        worst = float(t[finite].max())
    else:
        worst = 0.0
    t[~finite] = worst + 1.0
    return t.to(torch.float32)
