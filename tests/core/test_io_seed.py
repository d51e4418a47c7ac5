import json
import subprocess
import sys

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
