"""The zoo: shipped names, load errors, and the shipped digits teacher produces digits."""

import json

import pytest
import torch

import fewstep as fs
from fewstep import zoo
from fewstep.errors import CheckpointError

pytestmark = pytest.mark.skipif("digits-edm" not in zoo.names(), reason="digits-edm weights not shipped")


def test_names_and_manifest():
    assert "digits-edm" in zoo.names()
    m = zoo.manifest("digits-edm")
    assert m["command"].startswith("fewstep train ") and "--data digits" in m["command"]
    for key in ("seed", "commit", "wall_s", "metrics"):
        assert key in m


def test_shipped_teacher_loads_with_its_contract():
    den = fs.zoo.load("digits-edm")
    assert den.shape == (1, 8, 8) and den.sigma_min == 0.002 and den.sigma_max == 80.0
    assert den.config["precond"] == {"name": "edm", "kwargs": {"sigma_data": 0.5}}
    assert den(torch.zeros(2, 1, 8, 8), 1.0).shape == (2, 1, 8, 8)


def _digits_classifier():
    from sklearn.linear_model import LogisticRegression

    ds = fs.data.get("digits", "all")
    X, y = ds.x.reshape(len(ds.x), -1).numpy(), ds.y.numpy()
    clf = LogisticRegression(max_iter=2000).fit(X[::2], y[::2])
    return clf, X[1::2]


def test_shipped_teacher_samples_look_like_digits():
    torch.set_num_threads(1)
    den = fs.zoo.load("digits-edm")
    plan = fs.plans.get("heun", nfe=35, sigma_min=den.sigma_min, sigma_max=den.sigma_max)
    x_T = fs.seed.randn(fs.seed.seeds_for(100, 7), (1, 8, 8)) * plan.sigmas[0].item()
    with torch.no_grad():
        x = fs.sample(den, x_T, plan).clamp(-1, 1).reshape(100, -1).numpy()
    clf, real = _digits_classifier()
    # an independent classifier (trained here, on half of the real digits) is nearly as sure of the samples
    # as of the other half; noise with the data's per-pixel mean and std is far from both
    conf_fake, conf_real = clf.predict_proba(x).max(1).mean(), clf.predict_proba(real).max(1).mean()
    assert conf_fake > 0.8 * conf_real
    # nearest-neighbour distance to the held-out real digits: samples sit near the real-to-real level,
    # far below that of noise with the data's per-pixel mean and std
    g = torch.Generator().manual_seed(0)
    ds = fs.data.get("digits", "all")
    r, other = torch.as_tensor(real), ds.x.reshape(len(ds.x), -1)[::2][:100]
    noise = (r.mean(0) + r.std(0) * torch.randn(100, r.shape[1], generator=g)).clamp(-1, 1)
    nn_fake, nn_real, nn_noise = (torch.cdist(a, r).min(1).values.median() for a in (torch.as_tensor(x), other, noise))
    assert nn_fake - nn_real < 0.5 * (nn_noise - nn_real)


def test_unknown_name_and_bad_files_give_clear_errors(tmp_path):
    with pytest.raises(KeyError, match="digits-edm"):
        zoo.load("no-such-model")
    with pytest.raises(FileNotFoundError, match="no checkpoint"):
        zoo.load(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{garbage")
    with pytest.raises(CheckpointError):
        zoo.load(bad)
    with pytest.raises(KeyError, match="shipped"):
        zoo.manifest("no-such-model")


def test_manifest_is_valid_json_next_to_the_weights():
    assert json.loads((zoo.FILES / "digits-edm.json").read_text())["name"] == "digits-edm"
