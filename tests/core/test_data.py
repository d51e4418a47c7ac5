
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
    c8 = fs.data.get("digits_color_x8")
    assert c8.name == "digits_color" and len(c8) == 8 * len(c) and torch.equal(c8.x[:len(c)], c.x)
    assert torch.equal(c8.y, c.y.repeat(8)) and not torch.equal(c8.x[len(c):2 * len(c)], c.x)
    # every copy is the same digit's ink under another tint: u = a fg + (1 - a) bg, a the gray digit
    a = ((fs.data.get("digits").x[5] + 1) / 2).reshape(-1, 1)
    u = ((c8.x[len(c) + 5] + 1) / 2).reshape(3, -1).T
    coef = torch.linalg.lstsq(torch.cat([a, 1 - a], 1), u).solution  # rows: fg, bg
    assert torch.allclose(torch.cat([a, 1 - a], 1) @ coef, u, atol=1e-5)
    assert ((coef >= 0) & (coef <= 1)).all()
    assert torch.equal(fs.data.get("digits_color_x8", split="test").x, fs.data.get("digits_color", split="test").x)


def test_a_non_image_in_an_image_folder_is_named(tmp_path):
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.jpg").write_text("not an image")
    with pytest.raises(DataError, match=r"b\.jpg is not a readable image"):
        fs.data.get(str(tmp_path), size=4)


def _idx(path, arr):
    arr = np.asarray(arr, np.uint8)
    head = bytes([0, 0, 8, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    path.write_bytes(head + arr.tobytes())


def test_fashion_idx_files_are_read_and_empty_ones_named(tmp_path, monkeypatch):
    monkeypatch.setenv("FEWSTEP_FASHION_DIR", str(tmp_path))
    imgs = np.arange(3 * 28 * 28).reshape(3, 28, 28) % 256
    _idx(tmp_path / "t10k-images-idx3-ubyte", imgs)
    _idx(tmp_path / "t10k-labels-idx1-ubyte", [1, 2, 3])
    d = fs.data.get("fashion", "test")
    assert d.x.shape == (3, 1, 28, 28) and d.y.tolist() == [1, 2, 3]
    assert torch.equal(d.x, torch.from_numpy(imgs.astype(np.float32) / 255 * 2 - 1)[:, None])
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(b"")
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte is not a complete idx file"):
        fs.data.get("fashion", "test")
    with pytest.raises(DataError, match="train-images"):  # FEWSTEP_FASHION_DIR is the only place looked in
        fs.data.get("fashion", "train")
