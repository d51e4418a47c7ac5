"""CD / CT / iCT through the one training loop on a 2-D Gaussian: a few hundred steps of a tiny MLP move the
student toward the exact consistency function; the EMA target resumes exactly; the CLI runs."""

from __future__ import annotations

import math

import pytest
import torch
from click.testing import CliRunner

import fewstep as fs
from fewstep.data import ImageData
from fewstep.distill import GaussianConsistency
from fewstep.distill.consistency import ConsistencyConfig
from fewstep.distill.run import distill, scratch_config
from fewstep.train.loop import TrainConfig

MU, STD = torch.tensor([0.5, -0.3]), 0.4
NET = {"class": "mlp", "kwargs": {"dim": 2, "hidden": 64, "depth": 2}}


def _data(n: int = 2048) -> ImageData:
    g = torch.Generator().manual_seed(0)
    return ImageData("gauss", MU + STD * torch.randn(n, 2, generator=g))


def _error(f) -> float:
    """RMS distance to the exact consistency function over sigma in [0.01, 80] (log-uniform), x on the PF-ODE."""
    exact = GaussianConsistency(MU, torch.full((2,), STD), 0.002, 80.0)
    g = torch.Generator().manual_seed(1)
    sigma = torch.exp(torch.empty(2000, dtype=torch.float64).uniform_(math.log(0.01), math.log(80.0), generator=g))
    x = MU + (STD**2 + sigma[:, None] ** 2).sqrt().float() * torch.randn(2000, 2, generator=g)
    with torch.no_grad():
        return (f(x, sigma) - exact(x, sigma)).square().mean().sqrt().item()


@pytest.mark.parametrize("mode,extra", [("cd", {"N": 18}), ("cd", {"N": 18, "mu": 0.9, "dist": "pseudo_huber"}),
                                        ("cd", {"N": 18, "reg": 1.0, "reg_paths": 1024}),
                                        ("ct", {"s0": 2, "s1": 40}), ("ict", {"s0": 10, "s1": 80})])
def test_each_method_moves_the_student_toward_the_exact_consistency_function(mode, extra):
    teacher = fs.analytic.GaussianMixture(MU[None], torch.tensor([STD]), sigma_min=0.002, sigma_max=80.0)
    cc = ConsistencyConfig(mode=mode, **extra)
    tc = TrainConfig(steps=300, batch=256, lr=3e-3, warmup=20, ema_decay=0.9, progress=False, label_dropout=0.0)
    before = fs.io.build_denoiser(scratch_config((2,), NET))
    torch.manual_seed(0)
    res = distill(cc, tc, _data(), teacher=teacher, net=NET)
    e0, e1 = _error(before), _error(res.den)
    # distillation from an exact teacher converges fastest; CT/iCT's one-sample estimator is noisier
    assert e1 < (0.5 if mode == "cd" else 0.75) * e0, (e0, e1)
    assert torch.equal(res.den(torch.ones(3, 2), 0.002), torch.ones(3, 2))  # boundary condition survives


def test_resume_with_ema_target_is_exact(tmp_path):
    teacher = fs.analytic.GaussianMixture(MU[None], torch.tensor([STD]), sigma_min=0.002, sigma_max=80.0)
    cc = ConsistencyConfig(mode="ct", s0=2, s1=20, horizon=8)  # mu(k) > 0: the EMA target must be checkpointed
    kw = dict(batch=64, lr=1e-3, warmup=2, progress=False, label_dropout=0.0, ckpt_every=4)
    full = distill(cc, TrainConfig(steps=8, **kw), _data(), teacher=teacher, net=NET)
    out = tmp_path / "ct.safetensors"
    distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher, net=NET, out=out)
    resumed = distill(cc, TrainConfig(steps=8, **kw), _data(), teacher=teacher, net=NET, out=out, resume=True)
    for a, b in zip(full.raw.state_dict().values(), resumed.raw.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    with pytest.raises(fs.errors.CheckpointError):
        distill(ConsistencyConfig(mode="ct", s0=3, s1=20, horizon=8), TrainConfig(steps=9, **kw), _data(),
                teacher=teacher, net=NET, out=out, resume=True)


def test_a_checkpoint_from_before_an_option_existed_resumes_with_its_default(tmp_path):
    teacher = fs.analytic.GaussianMixture(MU[None], torch.tensor([STD]), sigma_min=0.002, sigma_max=80.0)
    cc, kw = ConsistencyConfig(mode="cd"), dict(batch=32, lr=1e-3, warmup=2, progress=False, label_dropout=0.0)
    out = tmp_path / "cd.safetensors"
    distill(cc, TrainConfig(steps=2, **kw), _data(), teacher=teacher, net=NET, out=out)
    ckpt = out.with_suffix(".ckpt.pt")
    state = torch.load(ckpt, weights_only=True)
    del state["config"]["model"]["distill"]["skip"]  # as written before --skip existed
    torch.save(state, ckpt)
    assert distill(cc, TrainConfig(steps=4, **kw), _data(), teacher=teacher, net=NET, out=out, resume=True).step == 4
    with pytest.raises(fs.errors.CheckpointError, match="skip"):  # a value other than the old default still differs
        distill(ConsistencyConfig(mode="cd", skip=2), TrainConfig(steps=6, **kw), _data(), teacher=teacher, net=NET,
                out=out, resume=True)


def test_cli_distills_a_tiny_teacher(tmp_path):
    from fewstep.cli.distill import distill as group

    cfg = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8,
                                                                   "channel_mult": [1], "num_blocks": 1,
                                                                   "num_classes": 10}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [1, 8, 8]}
    teacher = tmp_path / "t.safetensors"
    fs.io.save_model(teacher, fs.io.build_denoiser(cfg), cfg)
    out = tmp_path / "s.safetensors"
    r = CliRunner().invoke(group, ["consistency", "--teacher", str(teacher), "--mode", "cd", "--steps", "3",
                                   "--batch", "16", "--out", str(out), "--quiet", "--average-from", "2",
                                   "--average-every", "1"])
    assert r.exit_code == 0, r.output
    cm = fs.io.load_model(out)
    assert cm.config["precond"]["name"] == "consistency" and cm.config["distill"]["mode"] == "cd"
    assert "fewstep distill consistency" in cm.config["train"]["command"]
    assert "--average-from 2" in cm.config["train"]["command"] and cm.config["train"]["averaged_snapshots"] == 2
    r = CliRunner().invoke(group, ["consistency", "--mode", "cd", "--out", str(out)])
    assert r.exit_code != 0 and "teacher" in str(r.exception)


def test_cli_runs_dmd_as_a_last_stage_from_a_cd_student(tmp_path):
    from fewstep.cli.distill import distill as group

    cfg = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8,
                                                                   "channel_mult": [1], "num_blocks": 1}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [1, 8, 8]}
    teacher, cd, out = tmp_path / "t.safetensors", tmp_path / "cd.safetensors", tmp_path / "dmd.safetensors"
    fs.io.save_model(teacher, fs.io.build_denoiser(cfg), cfg)
    base = ["consistency", "--teacher", str(teacher), "--steps", "2", "--batch", "8", "--quiet", "--N", "6"]
    assert (r := CliRunner().invoke(group, base + ["--out", str(cd)])).exit_code == 0, r.output
    args = base + ["--mode", "dmd", "--init", str(cd), "--reg", "0.5", "--reg-paths", "8", "--fake-lr", "3e-4",
                   "--out", str(out)]
    assert (r := CliRunner().invoke(group, args)).exit_code == 0, r.output
    saved = fs.io.load_model(out).config
    assert saved["distill"]["mode"] == "dmd" and saved["distill"]["fake_lr"] == 3e-4
    assert saved["precond"]["name"] == "consistency" and "--mode dmd" in saved["train"]["command"]
    state = torch.load(out.with_suffix(".ckpt.pt"), weights_only=True)
    assert set(state["objective"]["fake"]) == {"net", "optimizer"}  # the fake denoiser is checkpointed
    r = CliRunner().invoke(group, ["consistency", "--mode", "dmd", "--out", str(out)])
    assert r.exit_code != 0 and "teacher" in str(r.exception)


def test_cli_regression_bank_is_cached_beside_the_checkpoint_and_reused_on_resume(tmp_path, monkeypatch):
    from fewstep.cli.distill import distill as group
    from fewstep.distill import teacher as teacher_mod

    cfg = {"kind": "denoiser", "net": {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8,
                                                                   "channel_mult": [1], "num_blocks": 1}},
           "precond": {"name": "edm", "kwargs": {"sigma_data": 0.5}}, "sigma_min": 0.002, "sigma_max": 80.0,
           "shape": [1, 8, 8]}
    teacher = tmp_path / "t.safetensors"
    fs.io.save_model(teacher, fs.io.build_denoiser(cfg), cfg)
    out = tmp_path / "s.safetensors"
    args = ["consistency", "--teacher", str(teacher), "--mode", "cd", "--N", "6", "--batch", "8", "--out", str(out),
            "--quiet", "--reg", "0.5", "--reg-paths", "12", "--ckpt-every", "1"]
    assert (r := CliRunner().invoke(group, args + ["--steps", "2"])).exit_code == 0, r.output
    cache = out.with_suffix(".ckpt.paths.pt")
    bank = torch.load(cache)
    assert bank["states"].shape == (12, 6, 1, 8, 8) and bank["key"]["paths"] == 12
    assert fs.io.load_model(out).config["distill"]["reg"] == 0.5

    def refuse(*a, **k):
        raise AssertionError("the cached bank should have been loaded")

    monkeypatch.setattr(teacher_mod, "teacher_trajectories", refuse)
    assert (r := CliRunner().invoke(group, args + ["--steps", "3", "--resume"])).exit_code == 0, r.output
    monkeypatch.undo()
    cache.write_bytes(b"not a torch file")  # a damaged cache is rebuilt, not a crash
    assert (r := CliRunner().invoke(group, args + ["--steps", "4", "--resume"])).exit_code == 0, r.output
    torch.testing.assert_close(torch.load(cache)["states"], bank["states"])  # seeded: the same trajectories
    other = fs.io.build_denoiser(cfg)  # another teacher saved at the same path: its trajectories, not the cached ones
    with torch.no_grad():
        for p in other.parameters():
            p.add_(0.1)
    fs.io.save_model(teacher, other, cfg)
    assert (r := CliRunner().invoke(group, args + ["--steps", "5", "--resume"])).exit_code == 0, r.output
    assert not torch.equal(torch.load(cache)["states"][:, -1], bank["states"][:, -1])
    r = CliRunner().invoke(group, ["consistency", "--mode", "ict", "--reg", "1", "--out", str(out)])
    assert r.exit_code != 0 and "reg" in str(r.exception)


def test_init_starts_a_second_stage_from_the_given_weights(tmp_path):
    teacher = fs.analytic.GaussianMixture(MU[None], torch.tensor([STD]), sigma_min=0.002, sigma_max=80.0)
    cc = ConsistencyConfig(mode="ict", s0=10, s1=80)
    kw = dict(batch=64, lr=1e-3, warmup=2, progress=False, label_dropout=0.0)
    first = tmp_path / "stage1.safetensors"
    distill(cc, TrainConfig(steps=5, **kw), _data(), teacher=teacher, net=NET, out=first)
    # a vanishing lr: the second stage's artefact is the weights it was initialised from (a fresh net is not)
    res = distill(cc, TrainConfig(steps=1, **{**kw, "lr": 1e-12}), _data(), teacher=teacher, net=NET,
                  out=tmp_path / "stage2.safetensors", init=str(first))
    for a, b in zip(fs.io.load_model(first).state_dict().values(), res.den.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-9)
    assert fs.io.load_model(tmp_path / "stage2.safetensors").config["distill"]["init"] == str(first)
    wide = {"class": "mlp", "kwargs": {"dim": 2, "hidden": 32, "depth": 2}}
    with pytest.raises(fs.errors.CheckpointError, match="same architecture"):
        distill(cc, TrainConfig(steps=1, **kw), _data(), teacher=teacher, net=wide, init=str(first))


def test_cli_offers_exactly_the_one_step_teacher_solvers():
    from fewstep.cli.distill import TEACHER_SOLVERS
    from fewstep.distill.teacher import ONE_STEP_NFE

    assert sorted(TEACHER_SOLVERS) == sorted(ONE_STEP_NFE)
