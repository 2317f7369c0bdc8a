"""Inference at the last position only, for the causal form of AutoMLP: the same numbers, a fraction of the work.

A recommendation needs the joint vector at the last position. `AutoMLP.joint` computes every position of
every layer, as training must. In the causal form, the last output of a stack of token maps with
look-backs a_1..a_m reads only the last 1 + a_m + ... positions of each map's input, and the channel
mixers work per position; so each map needs only its last few output rows and the columns they read.
For the long-term module (T = 200, look-backs 100, 99, 0, 0) that is about a twentieth of the products.

The result equals `model.joint(sequences)` up to float rounding (tests hold it to 1e-5); dropout is
ignored, so this is for eval mode only. The paper form (dense maps over all positions) is not pruned:
it falls back to `model.joint`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from engine.model import AutoMLP, ChannelMixer, MaskedTokenLinear, SequenceMixer, SRSMLP, split_look_back


def last_position_joint(model: AutoMLP, sequences: torch.Tensor) -> torch.Tensor:
    """LayerNorm([x_s ; x_l]) at the last position: (B, T) left-padded item ids -> (B, 2D).

    Equals `model.joint(sequences)` for a model in eval mode, at a fraction of the cost in causal form.
    """
    if not model.shape.causal or model.training:
        return model.joint(sequences)
    x = model.items.all_items()[sequences]  # (B, T, D); input dropout is the identity in eval mode
    x_long = _last_output(model.long_term, x, model.shape.max_length)  # (B, D)
    x_short = 0
    for weight, module, k in zip(model.candidate_weights(), model.short_term, model.shape.candidate_lengths):
        x_short = x_short + weight * _last_output(module, x, k)
    return model.output_norm(torch.cat([x_short, x_long], dim=-1))  # Eq. 4: [x_s ; x_l]


def _last_output(module: SRSMLP, x: torch.Tensor, window: int) -> torch.Tensor:
    """The output at the last position of a causal stack whose receptive field is `window`: (B, n, D) -> (B, D).

    The look-backs of its token maps come from the shape (as the model built them), not from the
    weights, so that the sizes below are plain integers and the function traces for ONNX export.
    """
    layers = list(module.layers)
    look_backs = iter(split_look_back(window, 2 * sum(isinstance(layer, SequenceMixer) for layer in layers)))
    maps = [(next(look_backs), next(look_backs)) if isinstance(layer, SequenceMixer) else None for layer in layers]
    # walk backwards: how many trailing positions each layer must produce for one final output
    produce, needed = [], 1
    for pair in reversed(maps):
        produce.append(needed)
        if pair is not None:
            needed += pair[0] + pair[1]
    produce.reverse()
    x = x[:, -needed:]  # (B, window, D): the receptive field
    for layer, pair, m_out in zip(layers, maps, produce):
        if isinstance(layer, SequenceMixer):
            y = layer.norm(x).transpose(1, 2)  # (B, D, m_in)
            m_mid = m_out + pair[1]
            y = _trailing_rows(layer.fc2, F.gelu(_trailing_rows(layer.fc1, y, m_mid, pair[0])), m_out, pair[1])
            x = x[:, -m_out:] + y.transpose(1, 2)  # (B, m_out, D)
        elif isinstance(layer, ChannelMixer):
            x = layer(x[:, -m_out:])
        else:
            raise TypeError(f"unexpected layer {type(layer).__name__}")
    return x[:, -1]


def _trailing_rows(token_map, y: torch.Tensor, m_out: int, look_back: int) -> torch.Tensor:
    """The last m_out outputs of a causal token map over the trailing m_in positions y: (..., m_in) -> (..., m_out).

    Every one of those outputs reads only positions inside y (m_in >= m_out + look_back), so cutting the
    weight to its trailing block gives the exact values.
    """
    m_in = y.shape[-1]
    if isinstance(token_map, MaskedTokenLinear):
        weight = token_map.weight[-m_out:, -m_in:] * token_map.mask[-m_out:, -m_in:]
        return F.linear(y, weight, token_map.bias[-m_out:])
    if token_map.weight.shape[1] != look_back + 1:  # a banded map stores one column per diagonal
        raise TypeError(f"token map has {token_map.weight.shape[1]} diagonals, expected {look_back + 1}")
    out = token_map.bias[-m_out:]
    weight = token_map.weight[-m_out:]  # (m_out, look_back + 1): row t holds w[t, j] for x[t - j]
    for j in range(look_back + 1):
        out = out + y[..., m_in - m_out - j:m_in - j] * weight[:, j]
    return out
