"""Per-model hyper-parameters from commented YAML, and the order in which overrides apply.

Override order (later wins), written down once here:

    1. recommender/model/configs/<model>.yaml   the commented defaults shipped with the code
    2. --config FILE                            a YAML file of your own (any subset of keys)
    3. HOTFEED_MODEL_PARAMS                     JSON object in the environment, via settings
    4. command-line flags                       --epochs, --seed, ... and --set key=value

So a flag beats env, and env beats the file. An unknown key is an error naming where it came
from; a value is converted to the type of its default and rejected when it does not fit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from recommender.errors import ConfigError, NotFound

__all__ = ["CONFIG_DIR", "load_model_config", "parse_assignments"]

CONFIG_DIR = Path(__file__).resolve().parent / "configs"


def _read_yaml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise NotFound(f"model config file {str(path)!r} does not exist")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"model config {str(path)!r} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"model config {str(path)!r} must be a mapping of key: value, got {type(data).__name__}")
    return data


def _coerce(key: str, value: Any, default: Any, source: str) -> Any:
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if str(value).lower() in ("true", "1", "yes", "false", "0", "no"):
            return str(value).lower() in ("true", "1", "yes")
    else:
        try:
            return type(default)(value)
        except (TypeError, ValueError):
            pass
    raise ConfigError(f"{source}: {key}={value!r} is not a {type(default).__name__}; fix the value")


def load_model_config(
    model: str,
    *,
    file: Path | None = None,
    env: dict[str, Any] | None = None,
    flags: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Return the effective hyper-parameters of ``model`` after every override (see module doc).

    Flags whose value is None are ignored (the flag was not given). Raises ConfigError for an
    unknown key or a badly typed value, NotFound for a missing ``file``.
    """
    default_path = CONFIG_DIR / f"{model}.yaml"
    if not default_path.exists():
        known = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))
        raise ConfigError(f"model {model!r} has no config; choose one of {known!r}")
    config = _read_yaml(default_path)
    layers = [
        (f"config file {str(file)!r}", _read_yaml(file) if file else {}),
        ("HOTFEED_MODEL_PARAMS", env or {}),
        ("command-line flags", {k: v for k, v in (flags or {}).items() if v is not None}),
    ]
    for source, values in layers:
        for key, value in values.items():
            if key not in config:
                raise ConfigError(
                    f"{source}: unknown {model} hyper-parameter {key!r}; known keys: {sorted(config)!r}"
                )
            config[key] = _coerce(key, value, config[key], source)
    return config


def parse_assignments(pairs: list[str] | None) -> dict[str, Any]:
    """Return {key: value} from ``key=value`` strings, values parsed as YAML scalars."""
    out: dict[str, Any] = {}
    for pair in pairs or []:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {pair!r} is not key=value (e.g. --set lr=0.002)")
        out[key.strip()] = yaml.safe_load(value)
    return out
