import os

import pytest
import torch

torch.set_default_dtype(torch.float32)
os.environ.setdefault("MPLBACKEND", "Agg")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models on a shared 2-core machine run several times faster on one thread (no oversubscription)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
