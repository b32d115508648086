import logging

import pytest
import torch

from recommender.errors import ConfigError
from recommender.model.device import pick_device


def test_auto_without_gpu_falls_back_to_cpu_and_logs(caplog):
    with caplog.at_level(logging.INFO):
        assert pick_device("auto", cuda_available=False) == torch.device("cpu")
    assert "cpu" in caplog.text


def test_auto_with_gpu_picks_cuda():
    assert pick_device("auto", cuda_available=True) == torch.device("cuda")


def test_explicit_cuda_without_gpu_is_a_config_error_naming_the_fix():
    with pytest.raises(ConfigError, match="HOTFEED_MODEL_DEVICE=auto"):
        pick_device("cuda", cuda_available=False)


def test_cpu_is_always_cpu():
    assert pick_device("cpu", cuda_available=True) == torch.device("cpu")


def test_unknown_setting_is_rejected():
    with pytest.raises(ConfigError, match="'tpu'"):
        pick_device("tpu")


def test_this_machine_resolves_auto():
    assert pick_device("auto").type in ("cpu", "cuda")
