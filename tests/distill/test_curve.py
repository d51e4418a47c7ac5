"""The benchmark's segmented training: its curve points and final weights are those of one uninterrupted run,
a cool-down included."""

import math
import shlex
import types

import torch

from fewstep import data as fsdata
from fewstep.bench import consistency as bc
from fewstep.distill.consistency import ConsistencyConfig
from fewstep.distill.run import distill
from fewstep.io import load_model
from fewstep.recipes.consistency import train_recipe, train_with_curve
from fewstep.train.loop import TrainConfig

NET = {"class": "unet", "kwargs": {"in_channels": 1, "channels": 8, "num_blocks": 1, "channel_mult": [1],
                                   "num_classes": 10}}


def _one_run(tmp_path, steps, cooldown):
    return distill(ConsistencyConfig(mode="ict", s0=2, s1=8, horizon=6),
                   TrainConfig(steps=steps, cooldown=cooldown, batch=8, lr=1e-3, warmup=1, ema_decay=0.9,
                               label_dropout=1.0, progress=False), fsdata.get("digits"),
                   out=tmp_path / f"one{steps}.safetensors").den.state_dict()


def test_segments_with_a_cooldown_equal_one_run_and_extend_from_the_stable_phase(tmp_path, monkeypatch):
    import fewstep.distill.run as run

    torch.set_num_threads(1)
    monkeypatch.setattr(run, "DEFAULT_NET", NET)
    opts = dict(batch=8, lr=1e-3, warmup=1, ema_decay=0.9, s0=2, s1=8, label_dropout=1.0, horizon=6)
    out = tmp_path / "seg.safetensors"
    man = train_with_curve("ict", out, steps=6, segments=3, teacher=None, n_eval=24, cooldown=3, **opts)
    assert [p["step"] for p in man["curve"]] == [2, 3, 6]  # 4 lies inside the cool-down: no segment ends there
    assert man["curve"][-1]["cooldown"] == 3 and (tmp_path / "seg.ckpt.stable.pt").is_file()
    cmd = shlex.split(man["command"])
    assert cmd[cmd.index("--steps") + 1] == "6" and cmd[cmd.index("--cooldown") + 1] == "3"
    seg = load_model(out).state_dict()
    assert all(torch.equal(v, seg[k]) for k, v in _one_run(tmp_path, 6, 3).items())
    # extending re-branches the cool-down from the stable phase: the same as one run of the longer recipe
    man = train_with_curve("ict", out, steps=8, segments=4, teacher=None, n_eval=24, cooldown=3, extend=True, **opts)
    assert [p["step"] for p in man["curve"]] == [2, 3, 4, 5, 8]
    seg = load_model(out).state_dict()
    assert all(torch.equal(v, seg[k]) for k, v in _one_run(tmp_path, 8, 3).items())


def test_a_two_stage_recipe_starts_stage_2_from_stage_1_and_joins_the_curves(tmp_path, monkeypatch):
    import fewstep.distill.run as run

    torch.set_num_threads(1)
    monkeypatch.setattr(run, "DEFAULT_NET", NET)
    recipe = dict(steps=4, segments=2, teacher=None, n_eval=24, batch=8, lr=1e-3, warmup=1, ema_decay=0.9, s0=2,
                  s1=8, label_dropout=1.0, then={"steps": 2, "segments": 1, "batch": 16, "lr": 1e-12})
    man = train_recipe("digits-ict", recipe, tmp_path / "zoo", scratch=tmp_path)
    first = tmp_path / "fewstep-digits-ict-stage1.safetensors"
    assert [(p["step"], p["stage"]) for p in man["curve"]] == [(2, 1), (4, 1), (6, 2)]
    assert man["curve"][-1]["wall_s"] >= man["curve"][1]["wall_s"] and man["wall_s"] == man["curve"][-1]["wall_s"]
    assert man["stage_wall_s"][0] == man["curve"][1]["wall_s"] and len(man["stage_threads"]) == 2
    one, two = (shlex.split(c) for c in man["stages"])
    assert two[two.index("--init") + 1] == str(first) and two[two.index("--batch") + 1] == "16"
    assert two[two.index("--s1") + 1] == "8" and "--init" not in one  # stage 2 inherits what `then` leaves alone
    # a vanishing stage-2 lr leaves the stage-1 weights: stage 2 really started from them
    a, b = load_model(first).state_dict(), load_model(tmp_path / "zoo" / "digits-ict.safetensors").state_dict()
    assert max((v - b[k]).abs().max().item() for k, v in a.items()) < 1e-6
    # --extend with stage 1 complete trains no stage-1 step (its checkpoint is not even needed) and redoes stage 2
    first.with_suffix(".ckpt.pt").unlink()
    again = train_recipe("digits-ict", recipe, tmp_path / "zoo", extend=True, scratch=tmp_path)
    assert again["curve"][:2] == man["curve"][:2] and again["stages"][0] == man["stages"][0]


def test_a_three_stage_recipe_chains_the_stages_and_a_stage_may_change_the_mode(tmp_path, monkeypatch):
    import fewstep.distill.run as run

    torch.set_num_threads(1)
    monkeypatch.setattr(run, "DEFAULT_NET", NET)
    recipe = dict(steps=2, segments=1, teacher=None, n_eval=24, batch=8, lr=1e-3, warmup=1, ema_decay=0.9, s0=2,
                  s1=8, label_dropout=1.0, then=[{"steps": 2, "segments": 2, "batch": 16},
                                                 {"steps": 1, "segments": 1, "mode": "ct", "lr": 1e-12}])
    man = train_recipe("digits-ict", recipe, tmp_path / "zoo", scratch=tmp_path)
    assert [(p["step"], p["stage"]) for p in man["curve"]] == [(2, 1), (3, 2), (4, 2), (5, 3)]
    assert len(man["stages"]) == len(man["stage_wall_s"]) == 3 and man["wall_s"] == man["curve"][-1]["wall_s"]
    two, three = (shlex.split(c) for c in man["stages"][1:])
    second = tmp_path / "fewstep-digits-ict-stage2.safetensors"
    assert two[two.index("--mode") + 1] == "ict" and two[two.index("--batch") + 1] == "16"
    assert three[three.index("--mode") + 1] == "ct" and three[three.index("--init") + 1] == str(second)
    assert three[three.index("--batch") + 1] == "8"  # a stage inherits stage 1's options, not the previous stage's
    a, b = load_model(second).state_dict(), load_model(tmp_path / "zoo" / "digits-ict.safetensors").state_dict()
    assert max((v - b[k]).abs().max().item() for k, v in a.items()) < 1e-6


def test_an_averaging_recipe_saves_the_mean_of_the_snapshots_and_records_it(tmp_path, monkeypatch):
    import fewstep.distill.run as run

    torch.set_num_threads(1)
    monkeypatch.setattr(run, "DEFAULT_NET", NET)
    opts = dict(batch=8, lr=1e-3, warmup=1, ema_decay=0.9, s0=2, s1=8, label_dropout=1.0, horizon=6)
    out = tmp_path / "avg.safetensors"
    man = train_with_curve("ict", out, steps=6, segments=2, teacher=None, n_eval=24, average_from=4, average_every=1,
                           **opts)
    cmd = shlex.split(man["command"])
    assert cmd[cmd.index("--average-from") + 1] == "4" and cmd[cmd.index("--average-every") + 1] == "1"
    emas = [_one_run(tmp_path, k, 0) for k in (4, 5, 6)]
    for key, value in load_model(out).state_dict().items():
        torch.testing.assert_close(value, sum(e[key] for e in emas) / 3, rtol=1e-5, atol=1e-7)


def test_a_stage_hands_its_trajectory_cache_to_the_next_replacing_an_older_one(tmp_path):
    from fewstep.recipes.staged import share_bank

    prev, nxt = tmp_path / "s1.ckpt.pt", tmp_path / "s2.ckpt.pt"
    nxt.with_suffix(".paths.pt").write_bytes(b"an older run's bank")
    share_bank(tmp_path / "none.ckpt.pt", nxt)  # nothing to hand on: the next stage's own cache stays
    assert nxt.with_suffix(".paths.pt").read_bytes() == b"an older run's bank"
    prev.with_suffix(".paths.pt").write_bytes(b"this run's bank")
    share_bank(prev, nxt)
    assert nxt.with_suffix(".paths.pt").read_bytes() == b"this run's bank"


def test_the_two_step_search_minimises_the_mean_fd_over_its_own_seeds(monkeypatch):
    """A score whose per-seed minima are 0.3 and 1.2: the mean's minimum is their geometric mean, ~0.6."""
    calls = []

    def fake_fd(cm, sigmas, n, seed):
        calls.append(seed)
        centre = 0.3 if seed % 2 else 1.2
        return (math.log(sigmas[1]) - math.log(centre)) ** 2

    monkeypatch.setattr(bc, "cm_fd", fake_fd)
    cm = types.SimpleNamespace(sigma_max=80.0)
    tau, _ = bc.best_two_step(cm, n=10, seeds=(1, 2), iters=12)
    assert abs(tau - 0.6) < 0.01
    assert set(calls) == {1, 2} and not set(bc.SEARCH_SEEDS) & set(bc.SEEDS + bc.LARGE_SEEDS)
