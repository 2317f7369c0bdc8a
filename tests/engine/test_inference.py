"""Last-position inference gives the joint vector of the full forward pass, for every causal shape."""

import pytest
import torch

from engine.config import RunConfig
from engine.inference import last_position_joint
from engine.model import ModelShape, build_model


def model_of(max_length, candidates, layers, mode="causal"):
    torch.manual_seed(0)
    config = RunConfig(max_length=max_length, candidate_lengths=candidates, num_layers=layers, embedding_dim=16,
                       sequence_hidden=16, channel_hidden=32, mode=mode)
    model = build_model(ModelShape.from_config(config, 50, candidates), (), "cpu").eval()
    if model.alpha is not None:  # unequal candidate weights, as after some search steps
        with torch.no_grad():
            model.alpha.normal_()
    return model


def sequences(max_length, batch=6):
    x = torch.randint(1, 51, (batch, max_length), generator=torch.Generator().manual_seed(1))
    x[:2, : max_length // 2] = 0  # short histories are left-padded
    return x


@pytest.mark.parametrize("max_length, candidates, layers", [
    (40, [3], 2),  # narrow band: the diagonal token maps
    (40, [30], 2),  # wide band: the dense masked maps
    (40, [1, 2, 5, 20, 40], 2),  # a search model, every candidate at once
    (12, [4], 3),  # deeper stacks
    (9, [9], 1),
])
def test_last_position_joint_equals_the_full_pass(max_length, candidates, layers):
    model = model_of(max_length, candidates, layers)
    x = sequences(max_length)
    with torch.no_grad():
        torch.testing.assert_close(last_position_joint(model, x), model.joint(x), atol=1e-5, rtol=0)


def test_paper_form_falls_back_to_the_full_pass():
    model = model_of(20, [5], 2, mode="sampled")
    x = sequences(20)
    with torch.no_grad():
        assert torch.equal(last_position_joint(model, x), model.joint(x))
