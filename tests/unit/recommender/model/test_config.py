import pytest

from recommender.errors import ConfigError
from recommender.model.config import load_model_config, parse_assignments


def test_flag_beats_env_beats_file(tmp_path):
    path = tmp_path / "my.yaml"
    path.write_text("epochs: 7\nlr: 0.5\nbatch_size: 32\n")
    config = load_model_config("sasrec", file=path, env={"lr": 0.25, "batch_size": 16}, flags={"batch_size": 8})
    assert (config["epochs"], config["lr"], config["batch_size"]) == (7, 0.25, 8)


def test_flags_left_unset_do_not_override():
    assert load_model_config("gru4rec", flags={"epochs": None})["epochs"] == 20


def test_unknown_key_names_its_source():
    with pytest.raises(ConfigError, match="HOTFEED_MODEL_PARAMS: unknown sasrec hyper-parameter 'epoch'"):
        load_model_config("sasrec", env={"epoch": 3})


def test_badly_typed_value_is_rejected():
    with pytest.raises(ConfigError, match="epochs='many'"):
        load_model_config("tailnet", flags=parse_assignments(["epochs=many"]))


def test_set_values_are_parsed_as_yaml_scalars():
    assert parse_assignments(["lr=0.01", "valid_metric=HR@20"]) == {"lr": 0.01, "valid_metric": "HR@20"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_assignments(["lr"])
