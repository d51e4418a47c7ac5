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
