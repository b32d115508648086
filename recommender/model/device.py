"""Choose the torch device the session model (and the clustering job) runs on: the one chooser."""

from __future__ import annotations

import logging
from typing import Literal

import torch

from recommender.errors import ConfigError

__all__ = ["DeviceSetting", "pick_device"]

DeviceSetting = Literal["auto", "cpu", "cuda"]

_log = logging.getLogger(__name__)


def pick_device(
    setting: str = "auto", *, cuda_available: bool | None = None, variable: str = "HOTFEED_MODEL_DEVICE"
) -> torch.device:
    """Return the torch device for ``setting``: "auto" (cuda when present, else cpu), "cpu" or "cuda".

    "auto" falls back to cpu with an info log line. An explicit "cuda" on a machine without
    a usable GPU raises ConfigError: someone asked for the GPU on purpose, and silently running
    20x slower on cpu would hide a broken driver. ``cuda_available`` overrides detection (tests);
    ``variable`` is the setting named in messages.
    """
    have_cuda = torch.cuda.is_available() if cuda_available is None else cuda_available
    if setting == "cpu":
        return torch.device("cpu")
    if setting == "cuda":
        if not have_cuda:
            raise ConfigError(
                f"device 'cuda' was requested but torch sees no CUDA GPU; set {variable}=auto (or cpu)"
                + (", or pass --device auto" if variable == "HOTFEED_MODEL_DEVICE" else "")
            )
        return torch.device("cuda")
    if setting == "auto":
        if have_cuda:
            return torch.device("cuda")
        _log.info("no CUDA GPU visible; running on cpu")
        return torch.device("cpu")
    raise ConfigError(f"{variable}={setting!r} is not one of 'auto', 'cpu', 'cuda'")
