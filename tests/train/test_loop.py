"""The training loop: the recipe lowers the loss, resume continues exactly, bad checkpoints give clear errors."""

from types import SimpleNamespace

import pytest
import torch

from fewstep import data
from fewstep.errors import CheckpointError
from fewstep.io import load_model, read_config
from fewstep.train import Objective, TrainConfig, edm_loss, load_checkpoint, train
from fewstep.train.loop import batch_indices, ema_from_checkpoint, lr_factor


def _toy(n=64, dim=3, k=3):
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % k
    return SimpleNamespace(x=torch.randn(n, dim, generator=g) * 0.3 + y[:, None].float() - 1, y=y, num_classes=k,
                           shape=(dim,))


def _mlp_config(dim=3, k=3):
    return {"net": {"class": "mlp", "kwargs": {"dim": dim, "hidden": 32, "depth": 2, "num_classes": k}},
            "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
            "shape": [dim]}


def _cfg(**kw):
    base = dict(steps=8, batch=16, lr=2e-3, warmup=3, ckpt_every=4, log_every=2, progress=False, seed=3)
    return TrainConfig(**{**base, **kw})


def test_recipe_lowers_the_loss_on_digits():
    torch.set_num_threads(1)
    ds = data.get("digits")
    mc = {"net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 16, "channel_mult": [1, 2],
                                              "num_blocks": 1, "num_classes": 10}},
          "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
          "shape": [1, 8, 8]}

    def held_out_loss(den):  # fixed examples and noise, so the comparison is deterministic
        with torch.no_grad():
            return edm_loss(den, ds.x[:256], ds.y[:256], torch.Generator().manual_seed(9)).mean().item()

    before = held_out_loss(train(mc, ds, _cfg(steps=1, lr=1e-9)).raw)
    after = held_out_loss(train(mc, ds, _cfg(steps=40, batch=32, lr=2e-3, warmup=5)).raw)
    assert after < 0.7 * before


def test_resume_continues_exactly(tmp_path):
    ds, mc = _toy(), _mlp_config()
    full = train(mc, ds, _cfg(steps=8), out=tmp_path / "full.safetensors")
    train(mc, ds, _cfg(steps=4), out=tmp_path / "half.safetensors")
    resumed = train(mc, ds, _cfg(steps=8), out=tmp_path / "half.safetensors", resume=True)
    assert resumed.step == 8
    for a, b in ((full.raw, resumed.raw), (full.den, resumed.den)):
        sa, sb = a.state_dict(), b.state_dict()
        assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert full.losses == resumed.losses
    full_ckpt, res_ckpt = load_checkpoint(tmp_path / "full.ckpt.pt"), load_checkpoint(tmp_path / "half.ckpt.pt")
    opt_a, opt_b = full_ckpt["optimizer"]["state"], res_ckpt["optimizer"]["state"]
    for s_a, s_b in zip(opt_a.values(), opt_b.values(), strict=True):
        assert torch.equal(s_a["exp_avg_sq"], s_b["exp_avg_sq"])
    # the artefact is the EMA denoiser, and the checkpoint's EMA equals it
    den = load_model(tmp_path / "half.safetensors")
    x = torch.randn(5, 3)
    labels = torch.tensor([0, 1, 2, 3, 0])
    assert torch.equal(den(x, 0.7, labels), resumed.den(x, 0.7, labels))
    assert torch.equal(ema_from_checkpoint(tmp_path / "half.ckpt.pt")(x, 0.7), den(x, 0.7))
    assert read_config(tmp_path / "half.safetensors")["train"]["steps"] == 8


def test_cooldown_decays_linearly_to_zero_over_the_last_steps():
    cfg = _cfg(steps=10, warmup=2, cooldown=4)
    f = [lr_factor(cfg, s) for s in range(10)]
    assert f[:6] == [0.5, 1, 1, 1, 1, 1] and f[6:] == [1.0, 0.75, 0.5, 0.25]
    assert [lr_factor(_cfg(steps=10, warmup=2), s) for s in range(10)] == [0.5] + [1.0] * 9
    with pytest.raises(ValueError, match="cooldown"):
        _cfg(steps=4, cooldown=5)


def test_cooldown_branches_exactly_from_a_stable_checkpoint(tmp_path):
    ds, mc = _toy(), _mlp_config()
    full = train(mc, ds, _cfg(steps=8, cooldown=4), out=tmp_path / "full.safetensors")
    stable = train(mc, ds, _cfg(steps=4), out=tmp_path / "b.safetensors")
    branched = train(mc, ds, _cfg(steps=8, cooldown=4), out=tmp_path / "b.safetensors", resume=True)
    sa, sb = full.raw.state_dict(), branched.raw.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa) and full.losses == branched.losses
    sc = train(mc, ds, _cfg(steps=8), out=tmp_path / "c.safetensors").raw.state_dict()
    assert not all(torch.equal(sa[k], sc[k]) for k in sa)  # the cool-down did change the run
    assert stable.step == 4
    # a checkpoint written inside its cool-down cannot be stretched into another schedule
    with pytest.raises(CheckpointError, match="cool-down"):
        train(mc, ds, _cfg(steps=12, cooldown=4), out=tmp_path / "full.safetensors", resume=True)


def test_average_is_the_mean_of_ema_snapshots_and_resumes_exactly(tmp_path):
    ds, mc = _toy(), _mlp_config()
    emas = [train(mc, ds, _cfg(steps=k)).den.state_dict() for k in (4, 6, 8)]  # the EMA at steps 4, 6, 8
    full = train(mc, ds, _cfg(steps=9, average_from=3, average_every=2), out=tmp_path / "a.safetensors")
    for key, value in full.den.state_dict().items():
        torch.testing.assert_close(value, sum(e[key] for e in emas) / 3, rtol=1e-6, atol=1e-7)
    assert read_config(tmp_path / "a.safetensors")["train"]["averaged_snapshots"] == 3
    train(mc, ds, _cfg(steps=5, average_from=3, average_every=2), out=tmp_path / "b.safetensors")
    resumed = train(mc, ds, _cfg(steps=9, average_from=3, average_every=2), out=tmp_path / "b.safetensors",
                    resume=True)
    sa, sb = full.den.state_dict(), resumed.den.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    # before the first snapshot the artefact is the EMA
    early = train(mc, ds, _cfg(steps=4, average_from=6)).den.state_dict()
    assert all(torch.equal(early[k], emas[0][k]) for k in early)
    with pytest.raises(ValueError, match="average_from"):
        _cfg(average_from=-1)


def test_batches_cover_each_epoch_once_and_split_across_ranks():
    n, b = 50, 10
    epoch = torch.cat([batch_indices(n, b, s, seed=1) for s in range(5)])
    assert sorted(epoch.tolist()) == list(range(n))
    full = batch_indices(n, b, 7, seed=1)
    shards = [batch_indices(n, b, 7, seed=1, rank=r, world=2) for r in range(2)]
    assert sorted(torch.cat(shards).tolist()) == sorted(full.tolist())


def test_resume_errors_are_clear(tmp_path):
    ds, mc = _toy(), _mlp_config()
    with pytest.raises(FileNotFoundError, match="without --resume"):
        train(mc, ds, _cfg(), ckpt=tmp_path / "missing.pt", resume=True)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        train(mc, ds, _cfg(), ckpt=bad, resume=True)
    train(mc, ds, _cfg(steps=4), ckpt=tmp_path / "ok.pt")
    with pytest.raises(CheckpointError, match="lr="):
        train(mc, ds, _cfg(steps=8, lr=1e-2), ckpt=tmp_path / "ok.pt", resume=True)
    other = _mlp_config()
    other["net"]["kwargs"]["hidden"] = 16
    with pytest.raises(CheckpointError, match="net="):
        train(other, ds, _cfg(steps=8), ckpt=tmp_path / "ok.pt", resume=True)


def test_bad_data_errors():
    ds, mc = _toy(), _mlp_config()
    with pytest.raises(ValueError, match="fewer than one batch"):
        train(mc, ds, _cfg(batch=128))
    with pytest.raises(ValueError, match="classes"):
        train(mc, SimpleNamespace(x=ds.x, y=None, num_classes=0), _cfg())
    with pytest.raises(ValueError, match="steps"):
        _cfg(steps=0)


class _CountingObjective(Objective):
    """EDM loss plus hooks whose state must survive a resume."""

    def __init__(self):
        self.calls = torch.zeros(())

    def loss(self, model, x0, cond, generator, step):
        assert step == int(self.calls)
        return edm_loss(model, x0, cond, generator)

    def after_step(self, den, step):
        self.calls += 1

    def state_dict(self):
        return {"calls": self.calls.clone()}

    def load_state_dict(self, state):
        self.calls = state["calls"].clone()


def test_objective_hooks_and_init_state_resume_exactly(tmp_path):
    ds, mc = _toy(), _mlp_config()
    init = train(mc, ds, _cfg(steps=2)).raw.state_dict()
    full = train(mc, ds, _cfg(steps=6), objective=_CountingObjective(), init_state=init)
    train(mc, ds, _cfg(steps=3), ckpt=tmp_path / "c.pt", objective=_CountingObjective(), init_state=init)
    obj = _CountingObjective()
    resumed = train(mc, ds, _cfg(steps=6), ckpt=tmp_path / "c.pt", resume=True, objective=obj)
    assert int(obj.calls) == 6
    sa, sb = full.raw.state_dict(), resumed.raw.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_label_dropout_one_trains_only_the_null_label():
    from fewstep.train.loop import drop_labels

    y = torch.arange(10)
    g = torch.Generator().manual_seed(0)
    assert (drop_labels(y, 1.0, 10, g) == 10).all()
    assert (drop_labels(y, 0.0, 10, g) == y).all()
    _cfg(label_dropout=1.0)
    with pytest.raises(ValueError, match="label_dropout"):
        _cfg(label_dropout=1.5)


def test_a_resume_inside_a_logging_window_logs_the_same_losses(tmp_path):
    ds, mc = _toy(), _mlp_config()
    cfg = dict(log_every=3, ckpt_every=4)  # the checkpoint at step 4 falls inside the window of steps 4-6
    full = train(mc, ds, _cfg(steps=8, **cfg), out=tmp_path / "full.safetensors")
    train(mc, ds, _cfg(steps=4, **cfg), out=tmp_path / "half.safetensors")
    resumed = train(mc, ds, _cfg(steps=8, **cfg), out=tmp_path / "half.safetensors", resume=True)
    assert len(full.losses) == 3 and full.losses == resumed.losses  # windows 1-3, 4-6, 7-8


def test_resume_with_fewer_steps_than_the_checkpoint_is_refused(tmp_path):
    ds, mc = _toy(), _mlp_config()
    train(mc, ds, _cfg(steps=4), out=tmp_path / "m.safetensors")
    with pytest.raises(ValueError, match=r"at step 4, past --steps 2.*--steps 4 or more"):
        train(mc, ds, _cfg(steps=2), out=tmp_path / "m.safetensors", resume=True)
    assert read_config(tmp_path / "m.safetensors")["train"]["steps"] == 4  # the manifest still tells the truth
