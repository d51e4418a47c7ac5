"""Bad input at the real entry point: one line `error: ...` on stderr naming the option or field and the fix, no
Python class name, exit 2 for a bad value, 1 for a failure while running, 130 when interrupted."""

from __future__ import annotations

import importlib
import os
import re
import sys

import pytest
import torch

import fewstep as fs
from fewstep.cli.main import main
from fewstep.distill.run import scratch_config

CLASS_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception|Interrupt)\b")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A tiny consistency model (1x8x8), a corrupt checkpoint, a folder, a file, an image folder with a non-image."""
    from PIL import Image

    root = tmp_path_factory.mktemp("bad")
    net = {"class": "unet", "kwargs": {"channels": 8, "channel_mult": [1], "num_blocks": 1, "num_classes": 10}}
    cfg = scratch_config((1, 8, 8), net)
    torch.manual_seed(0)
    fs.io.save_model(root / "cm.safetensors", fs.io.build_denoiser(cfg), cfg)
    (root / "corrupt.safetensors").write_bytes(b"\x00" * 64)
    (root / "dir").mkdir()
    (root / "file").write_text("x")
    (root / "imgs").mkdir()
    Image.fromarray(torch.zeros(8, 8, dtype=torch.uint8).numpy()).save(root / "imgs" / "a.png")
    (root / "imgs" / "b.png").write_text("not a png")
    fs.io.save_model(root / "drop1.safetensors", fs.io.build_denoiser(cfg), {**cfg, "train": {"label_dropout": 1.0}})
    # a model an older fewstep trained on an image folder: the folder recorded relative to where it was trained
    fs.io.save_model(root / "folder.safetensors", fs.io.build_denoiser(cfg),
                     {**cfg, "data": {"name": "folder:imgs", "loader": "imgs", "split": "train"}})
    return root


def run(argv, capsys, monkeypatch):
    """Run `fewstep ARGV` through main(); return (exit code, the one line of stderr)."""
    monkeypatch.setattr(sys, "argv", ["fewstep", *argv])
    with pytest.raises(SystemExit) as e:
        main()
    err = capsys.readouterr().err.strip()
    assert err and len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and "Traceback" not in err and not CLASS_NAME.search(err), err
    return e.value.code, err


EDIT = ["edit", "--model", "{cm}", "--n", "2", "--out", "{root}/e.png"]
TRAIN = ["train", "--data", "moons", "--net", "mlp", "--no-cond", "--steps", "1", "--batch", "16"]
NEW = "{root}/new.safetensors"
SEARCH = ["search", "--model", "{cm}", "--nfe", "3", "--out", "{root}/p.json"]
# (argv, exit code, words the line must hold: the option or field, and the fix)
CASES = [
    (["sample", "--model", "{cm}", "--device", "gpu0"], 2, ["--device", "gpu0", "available here: cpu"]),
    (["sample", "--model", "{cm}", "--device", "foo"], 2, ["--device", "available here: cpu"]),
    (["search", "--model", "{cm}", "--nfe", "3", "--out", "{root}/p.json", "--device", "cuda:7"], 2,
     ["--device", "not available on this machine", "available here: cpu"]),
    (["sample", "--model", "{cm}", "--seed", "100000000000000"], 2, ["--seed", "0<=x<=4294967295"]),
    (["sample", "--model", "{cm}", "--seed", "-1"], 2, ["--seed", "0<=x<=4294967295"]),
    (["sample", "--model", "{cm}", "--nfe", "0"], 2, ["--nfe", "positive"]),
    (["search", "--model", "{cm}", "--nfe", "0", "--out", "{root}/p.json"], 2, ["--nfe", "positive"]),
    (["sample", "--model", "{cm}", "--bogus"], 2, ["--bogus", "--help"]),
    (["sample"], 2, ["--model", "--help"]),
    ([*EDIT, "--op", "superres", "--factor", "3"], 2, ["--factor", "8x8", "use one of [2, 4, 8]"]),
    ([*EDIT, "--op", "superres", "--factor", "0"], 2, ["--factor", "x>=1"]),
    ([*EDIT, "--op", "interpolate", "--n", "1"], 2, ["--n", "at least 2"]),
    ([*EDIT, "--op", "interpolate", "--n", "0"], 2, ["--n", "x>=1"]),
    ([*EDIT, "--op", "inpaint", "--data", "mnist5k"], 2, ["--model", "(1, 8, 8)", "(1, 28, 28)", "give --data"]),
    ([*EDIT, "--op", "inpaint", "--data", "{root}/imgs"], 1, ["b.png", "not a readable image", "remove it"]),
    ([*EDIT, "--op", "inpaint", "--sigmas", "nan"], 2, ["--sigmas", "finite"]),
    ([*EDIT, "--op", "denoise", "--noise", "inf"], 2, ["--noise", "finite"]),
    (["edit", "--op", "inpaint", "--model", ""], 2, ["--model", "empty", "give a name"]),
    (["search", "--model", "", "--nfe", "3", "--out", "{root}/p.json"], 2, ["--model", "empty"]),
    ([*EDIT, "--op", "inpaint", "--out", "{root}/dir"], 2, ["--out", "is a folder", "give a file path"]),
    ([*EDIT, "--op", "inpaint", "--out", "{root}/file/e.png"], 2, ["--out", "which is a file", "another path"]),
    ([*SEARCH[:-1], "{root}/dir"], 2, ["--out", "is a folder"]),
    ([*SEARCH, "--state", "{root}/file/s.pt"], 2, ["--state", "which is a file"]),
    ([*SEARCH, "--sigma-max", "nan"], 2, ["--sigma-max", "finite"]),
    (["sample", "--model", "{root}/missing.safetensors"], 1, ["missing.safetensors", "zoo name"]),
    (["sample", "--model", "{root}/corrupt.safetensors", "--n", "4"], 1, ["corrupt.safetensors", "re-train"]),
    # training outputs: never overwritten or destroyed silently, checked before any work
    ([*TRAIN, "--out", "{cm}"], 2, ["cm.safetensors already exists", "--resume", "--overwrite"]),
    ([*TRAIN, "--out", NEW, "--ckpt", NEW], 2, ["--ckpt is the same file as --out", "another path"]),
    ([*TRAIN, "--out", NEW, "--resume", "--overwrite"], 2, ["--resume", "--overwrite", "give one of them"]),
    ([*TRAIN, "--out", "{root}/file/m.safetensors"], 2, ["--out", "which is a file"]),
    ([*TRAIN, "--out", NEW, "--ckpt", "{root}/dir"], 2, ["--ckpt", "is a folder"]),
    (["distill", "consistency", "--mode", "ict", "--init", NEW, "--out", NEW], 2, ["--init is the same file as --out"]),
    (["distill", "dmd", "--teacher", NEW, "--out", NEW], 2, ["--teacher is the same file as --out"]),
    ([*SEARCH, "--state", "{root}/p.json"], 2, ["--state", "same file as --out", "another path"]),
    # network options: the option and the form it takes
    (["train", "--channel-mult", "a,b", "--out", NEW], 2, ["--channel-mult", "'a,b'", "e.g. 1,2,2"]),
    (["train", "--channels", "7", "--out", NEW], 2,
     ["--channels", "7 x the last --channel-mult 2", "use a multiple of 2", "--channels 6"]),
    (["train", "--channels", "0", "--out", NEW], 2, ["--channels", "x>=1"]),
    (["train", "--net", "mlp", "--out", NEW], 2, ["--net", "2-D toy sets", "use --net unet"]),
    # a model trained with label dropout 1 has an untrained label input
    (["sample", "--model", "{root}/drop1.safetensors", "--class-label", "all", "--n", "4", "--out", "",
      "--no-metrics"], 2, ["label dropout 1", "--class-label"]),
]


@pytest.mark.parametrize("argv,code,words", CASES, ids=[" ".join(c[0][:1] + c[0][-2:]) for c in CASES])
def test_bad_input_is_one_clear_line(argv, code, words, files, capsys, monkeypatch):
    argv = [a.format(cm=files / "cm.safetensors", root=files) for a in argv]
    got, err = run(argv, capsys, monkeypatch)
    assert got == code, err
    for w in words:
        assert w in err, (w, err)


def test_cuda_without_cuda_lists_the_devices(files, capsys, monkeypatch):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    code, err = run(["sample", "--model", str(files / "cm.safetensors"), "--device", "cuda"], capsys, monkeypatch)
    assert code == 2 and "--device" in err and "'cuda' is not available" in err and "available here: cpu" in err


def test_read_only_folder_is_refused_before_any_work(files, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    if os.geteuid() == 0:  # root writes through 0o555: answer for ro as os.access does for an ordinary user
        real = os.access
        monkeypatch.setattr(os, "access", lambda p, m, **kw: False if (os.fspath(p) == str(ro) and m & os.W_OK)
                            else real(p, m, **kw))
    monkeypatch.setattr(fs.zoo, "load", lambda *a, **k: pytest.fail("the model was loaded before the check"))
    for argv in (["edit", "--op", "inpaint", "--out", str(ro / "e.png")],
                 ["search", "--model", "digits-edm", "--nfe", "3", "--out", str(ro / "sub" / "p.json")]):
        code, err = run(argv, capsys, monkeypatch)
        assert code == 2 and "--out" in err and f"cannot write into the folder {ro}" in err
    assert list(ro.iterdir()) == []  # the check created nothing
    ro.chmod(0o755)


@pytest.mark.parametrize("exc,code,words", [
    (KeyboardInterrupt(), 130, ["interrupted"]),
    (PermissionError(13, "Permission denied", "/data/x.safetensors"), 1, ["Permission denied", "/data/x"]),
    (fs.errors.CheckpointError("x.safetensors: cannot read the weights; re-train it"), 1, ["re-train"]),
    (KeyError("unknown model 'nope': give a shipped name"), 2, ["unknown model 'nope'"]),
])
def test_exit_codes_of_errors_raised_while_running(exc, code, words, capsys, monkeypatch):
    def load(*a, **k):
        raise exc

    monkeypatch.setattr(fs.zoo, "load", load)
    got, err = run(["edit", "--op", "inpaint", "--model", "m", "--out", "/tmp/never-written.png"], capsys,
                   monkeypatch)
    assert got == code and all(w in err for w in words), err


def test_a_folder_trained_model_sampled_elsewhere_says_which_folder_and_how_to_go_on(files, tmp_path, capsys,
                                                                                    monkeypatch):
    monkeypatch.chdir(tmp_path)  # not where the model was trained: its relative folder 'imgs' is not here
    generate = importlib.import_module("fewstep.zoo.generate")
    monkeypatch.setattr(generate, "draw", lambda *a, **k: pytest.fail("sampled before the check"))
    code, err = run(["sample", "--model", str(files / "folder.safetensors"), "--n", "4", "--out", ""], capsys,
                    monkeypatch)
    assert code == 2 and "--data" in err and "'imgs'" in err and str(tmp_path / "imgs") in err, err
    assert "relative to the directory the model was trained in" in err and "--no-metrics" in err, err


def test_a_second_training_run_on_the_same_out_fails_at_once_naming_the_pid(tmp_path, capsys, monkeypatch):
    import subprocess
    import time

    out = tmp_path / "m.safetensors"
    code = ("import sys, time; from fewstep.train.guard import hold\n"
            "with hold(sys.argv[1]):\n    print('held', flush=True); time.sleep(120)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    holder = subprocess.Popen([sys.executable, "-c", code, str(out)], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert holder.stdout.readline().strip() == "held"
        t0 = time.perf_counter()
        got, err = run([*TRAIN, "--out", str(out)], capsys, monkeypatch)
        assert time.perf_counter() - t0 < 10
        assert got == 1 and f"PID {holder.pid}" in err and "--out" in err and "choose another --out" in err, err
        assert not out.exists()
    finally:
        holder.kill()
        holder.wait()
