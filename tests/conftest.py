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


@pytest.fixture
def spawn_ranks(tmp_path):
    """Run worker(rank, done_dir, *args) on `nprocs` processes (torch.multiprocessing.spawn). Under load gloo can
    abort a rank (SIGABRT) while its process exits, after the work is done (seen in CI); that abort is accepted only
    when every rank wrote done_dir/done<rank> after its final barrier, so a rank that failed or diverged still fails."""
    import torch.multiprocessing as mp

    def run(worker, *args, nprocs: int = 2) -> None:
        done = tmp_path / "done"
        done.mkdir(exist_ok=True)
        try:
            mp.spawn(worker, args=(str(done), *args), nprocs=nprocs, join=True)
        except mp.ProcessExitedException as e:
            if e.signal_name != "SIGABRT" or not all((done / f"done{r}").is_file() for r in range(nprocs)):
                raise

    return run


def _blob_images(n: int = 48):
    """n 28x28 'digits': blobs at a class-dependent place (labelled, 3 classes), in [-1, 1]."""
    from fewstep.data.sets import ImageData

    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 3
    yy, xx = torch.meshgrid(torch.arange(28.0), torch.arange(28.0), indexing="ij")
    cx = 7 + 7 * y.float() + torch.rand(n, generator=g)
    img = torch.exp(-((xx - cx[:, None, None]) ** 2 + (yy - 14) ** 2) / 18)
    return ImageData("blobs", (img[:, None] * 2 - 1).clamp(-1, 1), y, 3)


@pytest.fixture(scope="session")
def blob_images():
    """A maker of tiny labelled 28x28 image sets for the latent stack's tests: blob_images(n)."""
    return _blob_images
