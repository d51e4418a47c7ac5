"""The shipped classifiers load, classify held-out data well, and their recipe still trains."""

import copy

import pytest
import torch

from fewstep import data
from fewstep.metrics import classifier as C


@pytest.mark.parametrize("name,floor", [("digits", 0.95), ("mnist5k", 0.95), ("digits_color", 0.85)])
def test_shipped_classifier_accuracy(name, floor):
    net = C.load_classifier(name)
    test = data.get(name, "test")
    assert C.accuracy(net, test.x, test.y) > floor
    man = C.manifest(name)
    assert man["data"] == name and man["command"].endswith(name) and man["test_accuracy"] > floor


def test_features_shape_and_confidence_on_real_data():
    net = C.load_classifier("digits")
    test = data.get("digits", "test")
    assert net.features(test.x[:5]).shape == (5, 128)
    r = C.confidence(test.x, "digits", test.y)
    assert r["accuracy"] > 0.95 and 0.9 < r["confidence"] <= 1
    # shuffled labels: accuracy drops to about chance
    wrong = C.confidence(test.x, "digits", (test.y + 1) % 10)
    assert wrong["accuracy"] < 0.05
    # a one-class set has zero class entropy; the real set is near log(10)
    assert C.confidence(test.x[test.y == 3], "digits")["class_entropy"] < 0.2
    assert r["class_entropy"] > 2.2


def test_shift_augmentation_is_a_translation():
    x = torch.arange(16.0).reshape(1, 1, 4, 4).repeat(50, 1, 1, 1)
    out = C.random_shift(x, 1, torch.Generator().manual_seed(0))
    # each output is the input translated by (dy, dx) in [-1, 1]^2 with edge padding: its centre 2x2 matches one
    centres = {tuple(o[0, 1:3, 1:3].flatten().tolist()) for o in out}
    assert len(centres) > 1
    for c in centres:
        assert any(c == tuple(x[0, 0, 1 + dy:3 + dy, 1 + dx:3 + dx].flatten().tolist())
                   for dy in (-1, 0, 1) for dx in (-1, 0, 1))


def test_recolor_stays_in_the_tint_family():
    # a*fg + (1-a)*bg re-tinted is a'*fg' + (1-a)*bg' with the same ink a: per pixel, channels are affine in a
    a = torch.rand(4, 1, 8, 8)
    x = (a * torch.rand(4, 3, 1, 1) + (1 - a) * torch.rand(4, 3, 1, 1)) * 2 - 1
    y = (C.random_recolor(x, torch.Generator().manual_seed(0)) + 1) / 2
    assert y.min() >= 0 and y.max() <= 1
    for i in range(4):
        A = torch.stack([a[i].flatten(), torch.ones(64)], 1)
        sol = torch.linalg.lstsq(A, y[i].reshape(3, 64).T).solution
        assert (A @ sol - y[i].reshape(3, 64).T).abs().max() < 1e-5


def test_recipe_still_trains():
    recipe = copy.deepcopy(C.RECIPES["digits"]) | {"epochs": 3}
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the recipe is made for one core; more threads only fight on a shared machine
    try:
        model, man = C.train_classifier("digits", recipe)
    finally:
        torch.set_num_threads(threads)
    assert man["test_accuracy"] > 0.8 and man["recipe"]["epochs"] == 3


@pytest.mark.slow
def test_shipped_digits_classifier_reproduces_from_its_manifest(tmp_path):
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        man = C.retrain("digits", root=tmp_path)
    finally:
        torch.set_num_threads(threads)
    assert (tmp_path / "digits-classifier.safetensors").is_file()
    assert man["recipe"] == C.manifest("digits")["recipe"]
    assert abs(man["test_accuracy"] - C.manifest("digits")["test_accuracy"]) < 0.015


def test_unknown_data_set():
    with pytest.raises(FileNotFoundError, match="fewstep metrics train-classifier"):
        C.load_classifier("fashion-nope")
