"""`fewstep bench foundation --time-steps`: the training-time projection refuses commands it cannot rewrite."""

import pytest

from fewstep.cli.bench_foundation import time_training


@pytest.mark.parametrize("cmd", ["fewstep distill consistency --out x.safetensors", "fewstep train --steps 5"])
def test_time_training_needs_a_train_command_with_an_output(cmd):
    with pytest.raises(ValueError, match="fewstep train"):
        time_training(cmd, 2, 10)
