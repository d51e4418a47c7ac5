import numpy as np
import pytest
import torch

import fewstep as fs
from fewstep.errors import DataError


def test_digits_split_and_range():
    tr, te, al = (fs.data.get("digits", s) for s in ("train", "test", "all"))
    assert al.x.shape == (1797, 1, 8, 8) and al.num_classes == 10
    assert len(tr) + len(te) == len(al)
    assert al.x.min() == -1 and al.x.max() == 1
    # the two splits are disjoint subsets of the full set
    flat = lambda d: {tuple(r) for r in d.x.reshape(len(d), -1).tolist()}  # noqa: E731
    assert flat(tr) | flat(te) <= flat(al)


def test_mnist5k_and_resize():
    d = fs.data.get("mnist5k", "test", size=16)
    assert d.x.shape == (1000, 1, 16, 16) and d.y is not None


def test_folder_loader(tmp_path):
    from PIL import Image

    for i in range(3):
        Image.fromarray((np.random.rand(10, 12, 3) * 255).astype(np.uint8)).save(tmp_path / f"{i}.png")
    d = fs.data.get(str(tmp_path), size=8)
    assert d.x.shape == (3, 3, 8, 8) and d.x.abs().max() <= 1
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images"):
        fs.data.get(f"folder:{tmp_path / 'empty'}")


def test_errors_and_colour():
    with pytest.raises(KeyError, match="known"):
        fs.data.get("cifar10")
    c = fs.data.get("digits_color")
    assert c.x.shape[1] == 3 and torch.isfinite(c.x).all()
