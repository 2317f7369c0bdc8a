"""What-if (issue 14, item 5): each candidate window alone, from the supernet or an exhaustive run's models."""

import argparse
import json
import shutil

import numpy as np
import pytest
import torch

from engine.cli.model_commands import add_model_commands
from engine.core.config import RunConfig
from engine.serving.bundle import BundleError, load_bundle, save_bundle
from engine.serving.recommend import RecommendError, recommend
from engine.serving.what_if import WhatIfModels, one_hot_scores, what_if
from engine.training.runner import run_automlp


@pytest.fixture(scope="module")
def saved(trained, tmp_path_factory):
    result, data = trained
    return save_bundle(result, data, tmp_path_factory.mktemp("what_if") / "tiny")


def user_of(data):
    return data.user_ids[5]


def test_run_keeps_its_search_supernet_with_every_candidate(trained):
    result, _ = trained
    supernet = result.search.supernet
    assert supernet.shape.candidate_lengths == (1, 2, 4)
    assert np.allclose(supernet.alpha.detach().numpy(), result.search.alpha_history[-1])


def test_one_hot_supernet_scores_equal_the_model_with_alpha_one_hot(trained):
    result, data = trained
    supernet = result.search.supernet.eval()
    sequences = torch.from_numpy(data.histories("test", supernet.shape.max_length))
    alpha = supernet.alpha.detach().clone()
    for index, k in enumerate(supernet.shape.candidate_lengths):
        hand_built = replace_alpha_copy(supernet, index)
        with torch.no_grad():
            expected = hand_built(sequences)
            got = one_hot_scores(supernet, sequences, k)
        assert torch.allclose(got, expected, atol=1e-5)
    assert torch.equal(supernet.alpha.detach(), alpha)  # the loaded model is left as it was


def replace_alpha_copy(model, index):
    """A copy whose softmax(alpha) is one-hot on candidate `index` (alpha -inf elsewhere)."""
    import copy
    twin = copy.deepcopy(model)
    with torch.no_grad():
        twin.alpha.fill_(float("-inf"))
        twin.alpha[index] = 0.0
    return twin.eval()


def test_baseline_scores_have_no_short_term_part(trained):
    result, data = trained
    supernet = result.search.supernet.eval()
    sequences = torch.from_numpy(data.histories("test", supernet.shape.max_length))
    with torch.no_grad():
        long_term = supernet.long_term.last(supernet.items.all_items()[sequences.T],
                                            (sequences.T > 0).unsqueeze(-1).float())
        z = supernet.output_norm(torch.cat([torch.zeros_like(long_term), long_term], dim=-1))
        expected = supernet.score(supernet.output(z))
        assert torch.allclose(one_hot_scores(supernet, sequences, None), expected, atol=1e-6)


def test_brought_in_and_pushed_out_are_the_set_differences(trained):
    result, data = trained
    shown = what_if(bundle_like(result), data, user_of(data), n=10)
    base = set(shown.baseline.items)
    assert [w.length for w in shown.windows] == [1, 2, 4]
    for window in shown.windows:
        assert len(window.items) == 10
        assert set(window.brought_in) == set(window.items) - base
        assert set(window.pushed_out) == base - set(window.items)
        assert window.weight == pytest.approx(result.search.final_weights[window.length])


def test_history_items_are_excluded_but_the_held_out_item_is_not(trained):
    result, data = trained
    user = 5
    history = set(data.item_ids[data.history(user, "test") - 1]) - {data.item_ids[data.target(user, "test") - 1]}
    shown = what_if(bundle_like(result), data, user_of(data), n=30)
    for window in [shown.baseline, *shown.windows]:
        assert not history & set(window.items)


def bundle_like(result):
    return WhatIfModels((1, 2, 4), result.search.final_weights, result.chosen_length, supernet=result.search.supernet)


def test_unknown_user_and_bad_n_are_refused(trained):
    result, data = trained
    with pytest.raises(RecommendError, match="unknown user"):
        what_if(bundle_like(result), data, "nobody", n=5)
    with pytest.raises(RecommendError, match="n must be positive"):
        what_if(bundle_like(result), data, user_of(data), n=0)


def test_bundle_round_trips_the_supernet(trained, saved):
    result, data = trained
    bundle = load_bundle(saved)
    assert bundle.what_if.kind == "supernet"
    sequences = torch.from_numpy(data.histories("test", 10))
    with torch.no_grad():
        assert torch.equal(bundle.what_if.supernet(sequences), result.search.supernet(sequences))
    assert what_if(bundle, bundle.data, user_of(data), 10) == what_if(bundle_like(result), data, user_of(data), 10)


def test_bundle_missing_a_listed_what_if_file_is_refused(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "copy")
    (copy / "what_if.supernet.safetensors").unlink()
    with pytest.raises(BundleError, match="truncated: .*lacks what_if.supernet.safetensors"):
        load_bundle(copy)


def test_bundle_with_a_damaged_what_if_file_is_refused(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "copy")
    blob = bytearray((copy / "what_if.supernet.safetensors").read_bytes())
    blob[-1] ^= 1
    (copy / "what_if.supernet.safetensors").write_bytes(bytes(blob))
    with pytest.raises(BundleError, match="tampered"):
        load_bundle(copy)


def test_old_bundle_without_what_if_loads_and_says_it_is_unavailable(saved, tmp_path):
    copy = shutil.copytree(saved, tmp_path / "copy")
    info = json.loads((copy / "config.json").read_text())
    del info["what_if"], info["files"]["what_if.supernet.safetensors"]
    (copy / "config.json").write_text(json.dumps(info))
    (copy / "what_if.supernet.safetensors").unlink()
    bundle = load_bundle(copy)
    assert bundle.what_if is None
    with pytest.raises(RecommendError, match="no what-if models"):
        what_if(bundle, bundle.data, user_of(bundle.data), 5)


def test_exhaustive_run_keeps_each_candidates_model_through_the_bundle(trained, tmp_path):
    _, data = trained
    config = RunConfig(candidate_lengths=[1, 3], max_length=8, embedding_dim=8, sequence_hidden=8, channel_hidden=16,
                       batch_size=64, retrain_epochs=1, eval_negatives=20, device="cpu", strategy="exhaustive")
    result = run_automlp(data, config)
    assert sorted(result.candidate_models) == [1, 3]
    bundle = load_bundle(save_bundle(result, data, tmp_path / "exhaustive"))
    assert bundle.what_if.kind == "exhaustive"
    shown = what_if(bundle, bundle.data, user_of(data), 5)
    for window in shown.windows:  # each k's own model alone ranks as `recommend` ranks with it
        own = result.candidate_models[window.length]
        assert window.items == [r.item_id for r in recommend(own, data, user_of(data), 5).items]


def automlp(*argv):
    parser = argparse.ArgumentParser(prog="automlp")
    add_model_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.handler(args)


def test_cli_prints_each_window_with_marks_and_weights(trained, saved, capsys):
    result, data = trained
    assert automlp("recommend", "--bundle", str(saved), "--user", str(user_of(data)), "-n", "5", "--what-if") == 0
    out = capsys.readouterr().out
    shown = what_if(load_bundle(saved), data, user_of(data), 5)
    for window in shown.windows:
        assert f"k = {window.length} (softmax(alpha) {window.weight:.3f})" in out
        for item in window.brought_in:
            assert f"+{item}" in out
        for item in window.pushed_out:
            assert f"-{item}" in out
    assert f"k = {result.chosen_length} (softmax(alpha)" in out and "<- chosen" in out
