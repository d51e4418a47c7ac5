"""`fewstep train` end to end on tiny settings: the artefact records its exact command and resume works."""

import shlex

from click.testing import CliRunner

from fewstep.cli.main import cli
from fewstep.io import load_model, read_config

TINY = ["train", "--data", "digits", "--net", "unet", "--channels", "8", "--channel-mult", "1,2", "--num-blocks",
        "1", "--batch", "16", "--quiet", "--ckpt-every", "2"]


def test_train_writes_a_loadable_model_with_its_command(tmp_path):
    out = str(tmp_path / "m.safetensors")
    r = CliRunner().invoke(cli, [*TINY, "--steps", "2", "--out", out])
    assert r.exit_code == 0, r.output
    assert '"command"' in r.output  # the resolved config is printed first
    cfg = read_config(out)
    cmd = shlex.split(cfg["train"]["command"])
    assert cmd[:2] == ["fewstep", "train"] and cmd[cmd.index("--steps") + 1] == "2" and "--resume" not in cmd
    # the recorded command parses back to the same options (it is what `fewstep zoo rebuild` reruns)
    ctx = cli.get_command(None, "train").make_context("train", cmd[2:])
    assert ctx.params["data_name"] == "digits" and ctx.params["channels"] == 8 and ctx.params["cond"] is True
    assert cfg["net"]["kwargs"]["num_classes"] == 10 and cfg["shape"] == [1, 8, 8]
    assert load_model(out).shape == (1, 8, 8)
    r = CliRunner().invoke(cli, [*TINY, "--steps", "4", "--out", out, "--resume"])
    assert r.exit_code == 0, r.output
    assert read_config(out)["train"]["steps"] == 4


def test_train_bad_options_fail_clearly(tmp_path):
    r = CliRunner().invoke(cli, ["train", "--data", "moons", "--cond", "--net", "mlp", "--out",
                                 str(tmp_path / "m.safetensors")])
    assert r.exit_code != 0 and "--no-cond" in r.output
    r = CliRunner().invoke(cli, ["train", "--data", "moons", "--net", "unet", "--no-cond", "--out",
                                 str(tmp_path / "m.safetensors")])
    assert r.exit_code != 0 and "--net mlp" in r.output
    for opt, value in (("--average-every", "0"), ("--average-from", "-1")):
        r = CliRunner().invoke(cli, ["train", "--data", "moons", "--net", "mlp", "--no-cond", opt, value, "--out",
                                     str(tmp_path / "m.safetensors")])
        assert r.exit_code != 0 and opt in r.output


def test_a_loader_of_a_known_distribution_is_scored_as_that_distribution(tmp_path):
    from fewstep.zoo.lookup import dataset_of

    out = str(tmp_path / "c.safetensors")
    args = [a if a != "digits" else "digits_color_x8" for a in TINY]
    r = CliRunner().invoke(cli, [*args, "--no-cond", "--steps", "1", "--cooldown", "1", "--out", out])
    assert r.exit_code == 0, r.output
    cfg = read_config(out)
    assert cfg["data"] == {"name": "digits_color", "loader": "digits_color_x8", "split": "train"}
    assert dataset_of(load_model(out)) == "digits_color" and cfg["train"]["cooldown"] == 1
    assert "--cooldown 1" in cfg["train"]["command"]
