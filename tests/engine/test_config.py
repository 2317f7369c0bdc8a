"""The run configuration: validation with messages that name the key, and TOML round trips."""

import pytest

from engine.core.config import ConfigError, RunConfig, parse_override
from engine.training.device import resolve_device


@pytest.mark.parametrize("changes,message", [
    ({"candidate_lengths": []}, "candidate_lengths: give at least one"),
    ({"candidate_lengths": [5, 300], "max_length": 200}, "300 is longer than max_length T=200"),
    ({"candidate_lengths": [0, 5]}, "must be positive"),
    ({"candidate_lengths": [5, 5]}, "distinct"),
    ({"embedding_dim": 0}, "embedding_dim: must be positive"),
    ({"channel_hidden": -3}, "channel_hidden: must be positive"),
    ({"device": "tpu"}, "device: 'tpu' is not one of auto, cpu, cuda"),
    ({"loss": "mse"}, "loss: 'mse' is not one of ce, sampled_softmax, bce"),
    ({"dropout": 1.0}, "dropout: must be in [0, 1)"),
    ({"lr": "fast"}, "lr: expected float, got str"),
    ({"num_layers": 2.5}, "num_layers: expected int"),
    ({"min_user_interactions": 2}, "min_user_interactions: leave-one-out needs at least 3"),
])
def test_impossible_configurations_are_refused_with_a_message_naming_the_key(changes, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("(", r"\(").replace(")", r"\)")):
        RunConfig(**changes)


def test_first_order_search_means_xi_zero():
    assert RunConfig(search_order="first", xi=0.5).chosen_xi == 0.0
    assert RunConfig(search_order="second", xi=0.5).chosen_xi == 0.5


def test_toml_round_trip_keeps_every_value(tmp_path):
    config = RunConfig(candidate_lengths=[3, 7], max_length=30, lr=0.005, mode="sampled", protocol="popularity")
    config.save_toml(tmp_path / "run.toml")
    assert RunConfig.load_toml(tmp_path / "run.toml") == config


def test_toml_with_an_unknown_key_is_refused(tmp_path):
    (tmp_path / "run.toml").write_text("version = 1\nlearning_rate = 0.1\n")
    with pytest.raises(ConfigError, match="learning_rate: unknown configuration key"):
        RunConfig.load_toml(tmp_path / "run.toml")


def test_toml_with_a_wrong_type_names_the_key(tmp_path):
    (tmp_path / "run.toml").write_text('batch_size = "big"\n')
    with pytest.raises(ConfigError, match="batch_size: expected int"):
        RunConfig.load_toml(tmp_path / "run.toml")


def test_toml_syntax_error_is_reported_with_the_file_name(tmp_path):
    (tmp_path / "broken.toml").write_text("lr = = 3\n")
    with pytest.raises(ConfigError, match="broken.toml: not valid TOML"):
        RunConfig.load_toml(tmp_path / "broken.toml")


def test_toml_from_a_newer_release_is_refused(tmp_path):
    (tmp_path / "run.toml").write_text("version = 99\n")
    with pytest.raises(ConfigError, match="newer than this release"):
        RunConfig.load_toml(tmp_path / "run.toml")


def test_overrides_parse_toml_values_and_bare_words():
    assert parse_override("candidate_lengths=[5, 10]") == ("candidate_lengths", [5, 10])
    assert parse_override("lr=0.01") == ("lr", 0.01)
    assert parse_override("mode=sampled") == ("mode", "sampled")
    with pytest.raises(ConfigError, match="unknown configuration key"):
        RunConfig().replace(nonsense=1)


def test_cuda_asked_for_without_a_gpu_is_refused(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ConfigError, match="device: cuda was asked for, but torch .* sees no GPU"):
        resolve_device("cuda")
    assert resolve_device("auto").type == "cpu"


def test_auto_device_takes_the_gpu_when_torch_sees_one(monkeypatch):
    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    assert resolve_device("auto").type == "cuda"


def test_auto_lengths_fit_t_to_the_95th_percentile_of_training_lengths_rounded_up_to_eight():
    import numpy as np
    fitted = RunConfig().fitted_to(np.arange(1, 21), 100)  # 95th percentile 19.05
    assert fitted.max_length == 24
    assert fitted.candidate_lengths == [2, 3, 5, 10, 20]


def test_auto_lengths_on_long_histories_are_the_paper_defaults():
    import numpy as np
    fitted = RunConfig().fitted_to(np.full(100, 1000), 100)
    assert (fitted.max_length, fitted.candidate_lengths) == (200, [5, 10, 20, 50, 100])


def test_auto_t_is_at_least_eight_and_short_data_gets_short_candidates():
    import numpy as np
    fitted = RunConfig().fitted_to(np.full(50, 3), 100)
    assert (fitted.max_length, fitted.candidate_lengths) == (8, [1, 2, 3, 5])


def test_explicit_lengths_win_over_auto():
    import numpy as np
    fitted = RunConfig(max_length=50, candidate_lengths=[4, 40]).fitted_to(np.full(10, 3), 100)
    assert (fitted.max_length, fitted.candidate_lengths) == (50, [4, 40])
    assert RunConfig(candidate_lengths=[30]).fitted_to(np.full(10, 3), 100).max_length == 30  # T covers K


def test_the_fitted_summary_says_what_auto_became():
    import numpy as np
    config = RunConfig()
    summary = config.fitted_summary(config.fitted_to(np.full(10, 1000), 100))
    assert "T = 200" in summary and "[5, 10, 20, 50, 100]" in summary
    explicit = RunConfig(max_length=20, candidate_lengths=[2], loss="ce")
    assert explicit.fitted_summary(explicit) == ""


def test_auto_loss_is_the_sampled_softmax_only_on_large_catalogues():
    import numpy as np

    from engine.core.config import SAMPLED_SOFTMAX_ABOVE
    config = RunConfig(loss="auto")
    assert config.fitted_to(np.full(10, 20), SAMPLED_SOFTMAX_ABOVE).loss == "ce"
    large = config.fitted_to(np.full(10, 20), SAMPLED_SOFTMAX_ABOVE + 1)
    assert large.loss == "sampled_softmax" and large.is_fitted
    assert "loss auto -> sampled_softmax" in config.fitted_summary(large)
    assert RunConfig(loss="bce").fitted_to(np.full(10, 20), 10 ** 6).loss == "bce"  # explicit wins
    assert not config.is_fitted


def test_auto_survives_a_toml_round_trip(tmp_path):
    RunConfig().save_toml(tmp_path / "run.toml")
    loaded = RunConfig.load_toml(tmp_path / "run.toml")
    assert loaded.max_length == "auto" and loaded.candidate_lengths == "auto"


def test_a_word_other_than_auto_for_t_is_refused():
    with pytest.raises(ConfigError, match='max_length: expected int or "auto"'):
        RunConfig(max_length="long")


def test_the_default_preset_file_holds_exactly_the_defaults():
    from engine.core.presets import load_preset
    assert load_preset("default") == RunConfig()


def test_the_converged_preset_trains_the_last_windows_until_validation_stops_improving():
    from engine.core.presets import PRESETS, load_preset
    config = load_preset("converged")
    assert "converged" in PRESETS
    assert (config.training_windows, config.retrain_epochs, config.patience) == ("last", 200, 10)
    assert config.replace(training_windows="random", retrain_epochs=30) == RunConfig()  # nothing else differs
