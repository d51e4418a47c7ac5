"""A training run's outputs: refused when they would destroy a file (API table), locked while a run holds them (an
OS flock on <out>.lock: a second process fails at once naming the holder's PID; a SIGKILLed holder frees it)."""

import os
import signal
import subprocess
import sys
import time

import pytest

from fewstep.train.guard import OutputLocked, check_outputs, hold, lock_path

HOLDER = ("import sys, time; from fewstep.train.guard import hold\n"
          "with hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n")


def _holder(out):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    p = subprocess.Popen([sys.executable, "-c", HOLDER, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    assert p.stdout.readline().strip() == "held"
    return p


# (what exists, out, ckpt, resume, overwrite, inputs) -> words of the ValueError, or None when it passes
CASES = [
    ((), "m.safetensors", None, False, False, {}, None),
    (("m.safetensors",), "m.safetensors", None, False, False, {}, ["m.safetensors", "--resume", "--overwrite"]),
    (("m.ckpt.pt",), "m.safetensors", None, False, False, {}, ["m.ckpt.pt", "--resume", "--overwrite"]),
    (("c.pt",), "m.safetensors", "c.pt", False, False, {}, ["c.pt", "--resume"]),
    (("m.safetensors", "m.ckpt.pt"), "m.safetensors", None, True, False, {}, None),
    (("m.safetensors",), "m.safetensors", None, False, True, {}, None),
    ((), "m.safetensors", None, True, True, {}, ["--resume", "--overwrite", "give one"]),
    ((), "m.safetensors", "m.safetensors", True, False, {}, ["--ckpt is the same file as --out", "another path"]),
    ((), "m.safetensors", None, False, True, {"--init": "./m.safetensors"}, ["--init is the same file as --out"]),
    ((), "m.safetensors", None, False, False, {"--teacher": "digits-edm", "--init": None}, None),
]


@pytest.mark.parametrize("exists,out,ckpt,resume,overwrite,inputs,words", CASES)
def test_outputs_are_checked_before_any_work(exists, out, ckpt, resume, overwrite, inputs, words, tmp_path,
                                             monkeypatch):
    monkeypatch.chdir(tmp_path)
    for name in exists:
        (tmp_path / name).write_text("x")
    if words is None:
        check_outputs(out, ckpt, resume, overwrite, inputs)
        return
    with pytest.raises(ValueError) as e:
        check_outputs(out, ckpt, resume, overwrite, inputs)
    for w in words:
        assert w in str(e.value), (w, str(e.value))


def test_a_second_process_fails_at_once_naming_the_holder_and_a_kill_frees_the_lock(tmp_path):
    out = tmp_path / "m.safetensors"
    p = _holder(out)
    try:
        t0 = time.perf_counter()
        with pytest.raises(OutputLocked) as e:
            with hold(out):
                pass
        assert time.perf_counter() - t0 < 5
        assert f"PID {p.pid}" in str(e.value) and "--out" in str(e.value) and "another --out" in str(e.value)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    assert lock_path(out).exists()  # a killed run leaves the file, but the OS released its lock
    with hold(out):
        assert lock_path(out).read_text().strip() == str(os.getpid())
    assert not lock_path(out).exists()  # a finished run removes it


def test_the_lock_is_reentrant_within_one_process(tmp_path):
    out = tmp_path / "m.safetensors"
    with hold(out), hold(out):
        assert lock_path(out).exists()
    assert not lock_path(out).exists()
    with hold(None):
        pass
