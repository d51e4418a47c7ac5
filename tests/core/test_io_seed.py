import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from fewstep import io, seed
from fewstep.errors import CheckpointError


def test_save_read_config_roundtrip(tmp_path):
    m = torch.nn.Linear(3, 2)
    p = io.save_model(tmp_path / "m.safetensors", m, {"kind": "denoiser", "seed": 3})
    assert io.read_config(p)["seed"] == 3
    torch.testing.assert_close(io.load_state(p)["weight"], m.weight.detach())
    assert [f.name for f in tmp_path.iterdir()] == ["m.safetensors"]  # no temp files left behind


def test_atomic_write_keeps_old_file_on_failure(tmp_path):
    target = tmp_path / "ckpt.pt"
    io.atomic_torch_save({"step": 1}, target)

    def broken(tmp):
        open(tmp, "w").write("partial")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        io.atomic_write(target, broken)
    assert torch.load(target)["step"] == 1
    assert len(list(tmp_path.iterdir())) == 1


def test_bad_checkpoints(tmp_path):
    with pytest.raises(FileNotFoundError, match="zoo"):
        io.read_config(tmp_path / "missing.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00garbage")
    with pytest.raises(CheckpointError, match="safetensors"):
        io.read_config(bad)
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(1)}, str(tmp_path / "plain.safetensors"))
    with pytest.raises(CheckpointError, match="no fewstep config"):
        io.read_config(tmp_path / "plain.safetensors")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "v9.safetensors"), metadata={"fewstep": json.dumps({"format": 9})})
    with pytest.raises(CheckpointError, match="format"):
        io.read_config(tmp_path / "v9.safetensors")


def test_per_sample_noise_is_batch_independent():
    a = seed.randn([5, 6, 7], (2, 3))
    b = seed.randn([6], (2, 3))
    torch.testing.assert_close(a[1:2], b)
    assert not torch.equal(a[0], a[1])


def test_import_is_light():
    code = "import sys, fewstep, fewstep.cli.main; assert 'torch' not in sys.modules, 'torch'; " \
           "assert 'diffusers' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


_SLOW_WRITER = """
import sys, time
from fewstep import io

def write(tmp):
    open(tmp, "wb").write(b"x" * 100_000)
    print("writing", flush=True)
    time.sleep(60)

io.atomic_write(sys.argv[1], write)
"""


def _start_writer(target):
    """A subprocess inside atomic_write(target) that has written its temp file and sleeps."""
    env = {**os.environ, "PYTHONPATH": str(Path(io.__file__).parents[1])}
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)], stdout=subprocess.PIPE, env=env)
    assert proc.stdout.readline().strip() == b"writing"
    return proc


def _temps(folder):
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


def test_a_killed_writers_temp_file_is_removed_by_the_next_write(tmp_path):
    target = tmp_path / "ckpt.pt"
    proc = _start_writer(target)
    proc.kill()  # SIGKILL mid-write: no finally clause runs
    proc.wait()
    left = _temps(tmp_path)
    assert len(left) == 1 and left[0].startswith(f".ckpt.pt.{proc.pid}.")
    other = tmp_path / ".ckpt.pt.x.tmp"  # not a name atomic_write makes: left alone
    other.write_text("keep")
    io.atomic_torch_save({"step": 2}, target)
    assert _temps(tmp_path) == [other.name] and torch.load(target)["step"] == 2


def test_a_live_writers_temp_file_is_kept(tmp_path):
    target = tmp_path / "ckpt.pt"
    proc = _start_writer(target)
    try:
        live = _temps(tmp_path)
        io.atomic_torch_save({"step": 3}, target)  # another writer of the same path, while the first still runs
        assert _temps(tmp_path) == live and torch.load(target)["step"] == 3
    finally:
        proc.kill()
        proc.wait()
