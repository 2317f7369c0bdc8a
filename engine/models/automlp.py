"""The AutoMLP model (paper section 2.3): SRSMLP layers, long- and short-term modules, the output layer.

Shapes: B batch, T max length, D embedding size, M candidate lengths, N items (internal ids 1..N, 0 pads).

Two forms of the sequence mixer, chosen by the training mode:
- paper form (`faithful`, `sampled`): W1 (R_s x n), W2 (n x R_s) over the n positions of the module's
  input, exactly Eq. 1. The short-term module for length k reads the last k positions only. Only the
  last position's output is used: one prediction per sequence.
- causal form (`causal`): one hidden unit per position and both maps masked lower-triangular, so that
  position t reads only positions <= t and one pass trains the prediction at every position. The
  short-term module for length k runs over all T positions with banded masks whose look-backs add up to
  k - 1 across its 2L maps, so that the module as a whole sees exactly positions t-k+1..t (a band of k on
  every map would stack to 2L(k-1)+1 positions; see DESIGN.md, Known pitfalls).

The causal maps are "positional" (a weight for every pair of output and input position, the paper's
per-position mixing) or "relative" (`token_maps = "relative"`: one weight per look-back t - s, shared by
every position, a causal convolution along positions). A positional map's last row, which alone makes
the prediction at inference, learns only from each training window's last position; a relative map learns
from all of them.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.core.config import TOKEN_MAPS, RunConfig
from engine.models.embedding import ItemEmbedding


@dataclass(frozen=True)
class ModelShape:
    """Everything needed to rebuild a model's parameters: from a RunConfig plus the data's sizes."""

    n_items: int
    candidate_lengths: tuple[int, ...]
    max_length: int
    num_layers: int
    embedding_dim: int
    sequence_hidden: int
    channel_hidden: int
    dropout: float
    causal: bool
    feature_sizes: tuple[int, ...] = ()  # vocabulary size of each item feature (without padding)
    feature_widths: tuple[int, ...] = ()  # most values one item has, per feature
    token_maps: str = "positional"  # causal form: "positional" or "relative" (TOKEN_MAPS)

    def __post_init__(self) -> None:
        if self.token_maps not in TOKEN_MAPS:
            raise ValueError(f"token_maps: {self.token_maps!r} is not one of {', '.join(TOKEN_MAPS)}")

    @classmethod
    def from_config(cls, config: RunConfig, n_items: int, candidate_lengths=None, features=()) -> "ModelShape":
        if "auto" in (config.max_length, config.candidate_lengths):
            raise ValueError('candidate_lengths and max_length are "auto": fit them to the data first '
                             "(engine.training.runner.fit_to_data)")
        return cls(
            n_items=n_items,
            candidate_lengths=tuple(candidate_lengths or config.candidate_lengths),
            max_length=config.max_length,
            num_layers=config.num_layers,
            embedding_dim=config.embedding_dim,
            sequence_hidden=config.sequence_hidden,
            channel_hidden=config.channel_hidden,
            dropout=config.dropout,
            causal=config.mode == "causal",
            feature_sizes=tuple(len(f.vocabulary) for f in features),
            feature_widths=tuple(f.values.shape[1] for f in features),
            token_maps=config.token_maps,
        )


def split_look_back(length: int, n_maps: int) -> list[int]:
    """Spreads a window's look-back (length - 1 positions) over n_maps stacked token maps.

    The receptive field of maps with look-backs a_1..a_n is 1 + sum(a_i), so the module sees exactly
    `length` positions. The first layer's two maps take it all, so that every position of the window
    reaches the output through one direct mixing step; deeper layers mix channels per position.
    """
    first = (length - 1 + 1) // 2
    return [first, length - 1 - first] + [0] * (n_maps - 2)


def band_mask(n: int, look_back: int) -> torch.Tensor:
    """(n, n) mask: output t may read input s when 0 <= t - s <= look_back."""
    offsets = torch.arange(n)[:, None] - torch.arange(n)[None, :]
    return ((offsets >= 0) & (offsets <= look_back)).float()


# Activations are position-major, (n, B, D): a token map is then one (n x n) @ (n x B*D) product and a
# channel map one (n*B x D) @ (D x D') product, with no transposed copies in between.


class MaskedTokenLinear(nn.Module):
    """A linear map along positions whose weight is multiplied by a fixed band mask: y = (W * M) x + b."""

    def __init__(self, n: int, look_back: int) -> None:
        super().__init__()
        mask = band_mask(n, look_back)
        self.register_buffer("mask", mask, persistent=False)
        bound = 1.0 / torch.sqrt(mask.sum(dim=1, keepdim=True))  # per row: the inputs it really reads
        self.weight = nn.Parameter((torch.rand(n, n) * 2 - 1) * bound * mask)
        self.bias = nn.Parameter(torch.zeros(n))

    def forward(self, x: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """x: (m_in, ...) the trailing m_in positions -> (n_out, ...) the trailing n_out outputs."""
        m_in, n_out = x.shape[0], n_out or x.shape[0]
        weight = (self.weight * self.mask)[-n_out:, -m_in:]
        out = torch.addmm(self.bias[-n_out:, None], weight, x.reshape(m_in, -1))
        return out.view(n_out, *x.shape[1:])


class BandedTokenLinear(nn.Module):
    """The same map as MaskedTokenLinear for a narrow band, stored as its diagonals: y_t = sum_j w[t, j] x_{t-j} + b_t.

    A dense n x n product costs n^2 per channel whatever the band; the diagonals cost n (look_back + 1),
    which makes the short-term modules of small k nearly free on long windows. On short ones (a batch cut
    to a few positions) one dense product of the band beats look_back shifted copies, each a separate
    kernel forward and backward: then the diagonals are laid out as that dense band.
    """

    def __init__(self, n: int, look_back: int) -> None:
        super().__init__()
        self.look_back = look_back
        bound = 1.0 / (look_back + 1) ** 0.5
        self.weight = nn.Parameter((torch.rand(n, look_back + 1) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(n))

    def rows(self, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The trailing n_out outputs' diagonals (n_out, look_back + 1) and biases (n_out,)."""
        return self.weight[-n_out:], self.bias[-n_out:]

    def forward(self, x: torch.Tensor, n_out: int | None = None) -> torch.Tensor:
        """x: (m_in, ...) the trailing m_in positions -> (n_out, ...) the trailing n_out outputs."""
        m_in, n_out = x.shape[0], n_out or x.shape[0]
        weight, bias = self.rows(n_out)
        if self.look_back > 0 and (self.look_back + 1 > MAX_DIAGONALS
                                   or (self.look_back + 1) * DIAGONALS_PER_POSITION > m_in):
            out = torch.addmm(bias[:, None], self.dense_band(n_out, m_in), x.reshape(m_in, -1))
            return out.view(n_out, *x.shape[1:])
        column = (n_out,) + (1,) * (x.dim() - 1)
        out = x[m_in - n_out:] * weight[:, 0].view(column) + bias.view(column)
        for j in range(1, self.look_back + 1):
            start, end = m_in - n_out - j, m_in - j  # output r reads input r - j; before position 0 it reads 0
            if end <= 0:
                break  # this diagonal and the longer ones read only positions before the input
            piece = x[max(start, 0):end]
            if start < 0:
                piece = F.pad(piece, (0, 0) * (x.dim() - 1) + (-start, 0))
            out = out + piece * weight[:, j].view(column)
        return out

    def dense_band(self, n_out: int, m_in: int) -> torch.Tensor:
        """(n_out, m_in) the map's matrix from the trailing m_in inputs to the trailing n_out outputs."""
        device = self.weight.device
        offsets = (torch.arange(m_in - n_out, m_in, device=device)[:, None]
                   - torch.arange(m_in, device=device)[None, :])  # j = t - s
        inside = (offsets >= 0) & (offsets <= self.look_back)
        band = self.rows(n_out)[0].gather(1, offsets.clamp(0, self.look_back))
        return band * inside


class RelativeTokenLinear(BandedTokenLinear):
    """A causal token map with one weight per look-back j, shared by every position: y_t = sum_j w_j x_{t-j} + b.

    The same arithmetic as BandedTokenLinear (summed diagonals for a narrow band, else one dense product
    of the band), with every row reading the same diagonals and bias.
    """

    def __init__(self, look_back: int) -> None:
        nn.Module.__init__(self)
        self.look_back = look_back
        bound = 1.0 / (look_back + 1) ** 0.5
        self.weight = nn.Parameter((torch.rand(look_back + 1) * 2 - 1) * bound)
        self.bias = nn.Parameter(torch.zeros(1))

    def rows(self, n_out: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.weight.expand(n_out, -1), self.bias.expand(n_out)


# Above this many diagonals a dense masked product is faster than summing shifted copies.
MAX_DIAGONALS = 16
# A banded map sums its diagonals only where the input has at least this many positions per diagonal;
# below, one dense product of the band is faster (on a CPU, Sports' 16-position windows: see BENCHMARKS.md).
DIAGONALS_PER_POSITION = 8


def causal_token_linear(n: int, look_back: int, relative: bool = False) -> nn.Module:
    if relative:
        return RelativeTokenLinear(look_back)
    return BandedTokenLinear(n, look_back) if look_back + 1 <= MAX_DIAGONALS else MaskedTokenLinear(n, look_back)


def _trailing(real: torch.Tensor | None, rows: int) -> torch.Tensor | None:
    return None if real is None else real[-rows:]


def _keep(x: torch.Tensor, real: torch.Tensor | None, rows: int | None = None) -> torch.Tensor:
    """x with its padding positions zeroed; `real` covers x's trailing positions (the last `rows` of it)."""
    return x if real is None else x * real[-(rows or x.shape[0]):]


class SequenceMixer(nn.Module):
    """Eq. 1: x + W2 g(W1 LayerNorm(x)), mixing along positions, shared by all D channels."""

    def __init__(self, n_positions: int, dim: int, hidden: int, dropout: float,
                 look_backs: tuple[int, int] | None, relative: bool = False) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.look_backs = look_backs
        if look_backs is None:  # paper form
            self.fc1 = nn.Linear(n_positions, hidden)
            self.fc2 = nn.Linear(hidden, n_positions)
        else:  # causal form: hidden unit t belongs to position t
            self.fc1 = causal_token_linear(n_positions, look_backs[0], relative)
            self.fc2 = causal_token_linear(n_positions, look_backs[1], relative)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None, n_out: int | None = None) -> torch.Tensor:
        """(m_in, B, D) trailing positions -> (n_out, B, D); `real` (m_in, B, 1) is 1 at items, 0 at padding
        (None: no padding).

        Padding positions are zero on the way in and out, and so are their hidden units, so that they
        contribute nothing: the output does not depend on how much leading padding a sequence has, and
        a batch may be cut to its longest real window (the maps take their trailing rows and columns).
        """
        m_in = x.shape[0]
        n_out = n_out or m_in
        y = _keep(self.norm(x), real)  # (m_in, B, D): LayerNorm would give padding its bias beta
        if self.look_backs is None:
            flat = y.reshape(m_in, -1)  # (m_in, B*D)
            fc1_weight, fc2_weight = self.fc1.weight[:, -m_in:], self.fc2.weight[-m_in:]
            hidden = F.gelu(torch.addmm(self.fc1.bias[:, None], fc1_weight, flat))  # (R_s, B*D)
            y = torch.addmm(self.fc2.bias[-m_in:, None], fc2_weight, hidden).view(x.shape)[-n_out:]
        else:
            hidden_rows = min(n_out + self.look_backs[1], m_in)  # what fc2's n_out outputs read
            hidden = _keep(F.gelu(self.fc1(y, hidden_rows)), real, hidden_rows)  # unit t is position t's
            y = self.fc2(hidden, n_out)  # (n_out, B, D)
        return _keep(x[-n_out:] + self.dropout(y), real, n_out)


class ChannelMixer(nn.Module):
    """Eq. 2: x + W4 g(W3 LayerNorm(x)), mixing along the embedding, per position."""

    def __init__(self, dim: int, hidden: int, dropout: float) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None,
                real_rows: torch.Tensor | None = None) -> torch.Tensor:  # (n, B, D) -> (n, B, D)
        """With `real_rows` (the flat indices of x's real positions, from `packed_rows`), only those
        positions are computed: the map is per position, and padding's output is 0 either way."""
        if real_rows is not None:
            flat = x.reshape(-1, x.shape[-1])
            rows = flat.index_select(0, real_rows)
            return torch.zeros_like(flat).index_copy(0, real_rows, self._block(rows)).view(x.shape)
        return _keep(self._block(x), real)

    def _block(self, x: torch.Tensor) -> torch.Tensor:
        # Dropout on each block's output only: on a CPU, drawing the masks cost a quarter of a training
        # step when the hidden activations were dropped too (profiled on MovieLens-1M).
        return x + self.dropout(self.fc2(F.gelu(self.fc1(self.norm(x)))))


# Channel maps skip padding when at most this share of a batch's positions is real: gathering the rest
# and scattering it back costs less than computing the padding (Sports' training windows are 80% padding).
PACK_BELOW = 0.75


def packed_rows(real: torch.Tensor | None) -> torch.Tensor | None:
    """The flat indices of the real positions of `real` (n, B, 1), or None when too few positions are
    padding for packing to pay (or there is no padding mask)."""
    if real is None:
        return None
    flags = real.reshape(-1)
    rows = torch.nonzero(flags).squeeze(1)
    return rows if rows.numel() <= PACK_BELOW * flags.numel() else None


class SRSMLP(nn.Module):
    """A stack of L SRSMLP layers (sequence mixer then channel mixer) over `n_positions` positions.

    `window` is None for the paper form, or the causal receptive field of the whole stack (T for the
    long-term module, k for a short-term module).
    """

    def __init__(self, n_positions: int, shape: ModelShape, window: int | None) -> None:
        super().__init__()
        look_backs = None if window is None else split_look_back(window, 2 * shape.num_layers)
        self.sequence_mixers = nn.ModuleList()
        self.channel_mixers = nn.ModuleList()
        for layer in range(shape.num_layers):
            pair = None if look_backs is None else (look_backs[2 * layer], look_backs[2 * layer + 1])
            self.sequence_mixers.append(SequenceMixer(n_positions, shape.embedding_dim, shape.sequence_hidden,
                                                      shape.dropout, pair, shape.token_maps == "relative"))
            self.channel_mixers.append(ChannelMixer(shape.embedding_dim, shape.channel_hidden, shape.dropout))
        # In the causal form, how many trailing positions each layer must produce so that the last
        # position's output is exact: what `last()` computes instead of all n.
        self._trailing = None
        if look_backs is not None:
            needed, self._trailing = 1, []
            for layer in reversed(range(shape.num_layers)):
                self._trailing.insert(0, needed)
                needed += look_backs[2 * layer] + look_backs[2 * layer + 1]
            self._receptive_field = needed

    def forward(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:  # (n, B, D) -> (n, B, D)
        real_rows = packed_rows(real) if self.training else None  # evaluation batches are nearly all real
        for sequence_mixer, channel_mixer in zip(self.sequence_mixers, self.channel_mixers):
            x = channel_mixer(sequence_mixer(x, real), real, real_rows)
        return x

    def last(self, x: torch.Tensor, real: torch.Tensor | None = None) -> torch.Tensor:
        """(n, B, D), (n, B, 1) -> (B, D): the output at the last position only.

        In the causal form it reads only the receptive field and computes only the rows the next layer
        needs (for T = 200 a small fraction of the products); the paper form needs every position.
        """
        if self._trailing is None:
            return self.forward(x, real)[-1]
        x = x[-self._receptive_field:]
        for sequence_mixer, channel_mixer, rows in zip(self.sequence_mixers, self.channel_mixers, self._trailing):
            rows = min(rows, x.shape[0])  # a cut batch may have fewer positions than the field
            x = channel_mixer(sequence_mixer(x, _trailing(real, x.shape[0]), rows), _trailing(real, rows))
        return x[-1]


class AutoMLP(nn.Module):
    """Long-term module, one short-term module per candidate length, architecture weights, output layer.

    Follows RecBole's interface: `predict`-style scoring via `score`, and DARTS's split between
    `arch_parameters()` (alpha) and `network_parameters()` (everything else).
    """

    def __init__(self, shape: ModelShape) -> None:
        super().__init__()
        self.shape = shape
        T, D = shape.max_length, shape.embedding_dim
        self.items = ItemEmbedding(shape)
        self.input_dropout = nn.Dropout(shape.dropout)
        self.long_term = SRSMLP(T, shape, window=T if shape.causal else None)
        self.short_term = nn.ModuleList(
            SRSMLP(T if shape.causal else k, shape, window=k if shape.causal else None)
            for k in shape.candidate_lengths)
        # alpha exists only when there is something to choose (search); retraining keeps one candidate.
        m = len(shape.candidate_lengths)
        self.alpha = nn.Parameter(torch.zeros(m)) if m > 1 else None
        self.output_norm = nn.LayerNorm(2 * D)
        self.output = nn.Linear(2 * D, D)  # W_o (D x 2D), b_o

    def arch_parameters(self) -> list[nn.Parameter]:
        return [] if self.alpha is None else [self.alpha]

    def network_parameters(self) -> list[nn.Parameter]:
        return [p for name, p in self.named_parameters() if name != "alpha"]

    def candidate_weights(self) -> torch.Tensor:  # (M,) softmax(alpha), Eq. 3
        if self.alpha is None:
            return torch.ones(1, device=self.output.weight.device)
        return torch.softmax(self.alpha, dim=0)

    def joint(self, sequences: torch.Tensor, all_positions: bool = False,
              weights: torch.Tensor | None = None) -> torch.Tensor:
        """LayerNorm([x_s ; x_l]) for each sequence: (B, 2D), or (B, T', 2D) with all_positions (causal).
        x_s mixes the candidates by `weights` (M,): softmax(alpha) unless given (a what-if's one-hot).

        `sequences` (B, T') are left-padded item ids, T' <= T: a batch cut to its longest real history
        scores exactly as the same batch padded to T (padding contributes nothing).
        """
        if all_positions and not self.shape.causal:
            raise ValueError("all_positions needs the causal form of the model")
        if sequences.shape[1] > self.shape.max_length:
            raise ValueError(f"sequences of {sequences.shape[1]} positions; the model reads at most "
                             f"{self.shape.max_length}")
        positions = sequences.T  # (T', B)
        real = (positions > 0).unsqueeze(-1).to(self.output.weight.dtype)  # (T', B, 1)
        x = self.input_dropout(self.items.all_items()[positions])  # (T', B, D)

        def run(module: SRSMLP, inputs: torch.Tensor, inputs_real: torch.Tensor) -> torch.Tensor:
            if all_positions:
                return module(inputs, inputs_real)  # (T', B, D)
            return module.last(inputs, inputs_real)  # (B, D)

        x_long = run(self.long_term, x, real)
        x_short = 0
        weights = self.candidate_weights() if weights is None else weights
        for weight, module, k in zip(weights, self.short_term, self.shape.candidate_lengths):
            if self.shape.causal:
                x_short = x_short + weight * run(module, x, real)
            else:  # the paper's short-term module reads the last k positions (or all, if fewer)
                x_short = x_short + weight * run(module, x[-k:], real[-k:])
        z = self.output_norm(torch.cat([x_short, x_long], dim=-1))  # Eq. 4: [x_s ; x_l]
        return z.transpose(0, 1) if all_positions else z

    def hidden(self, sequences: torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        """h = W_o LayerNorm([x_s ; x_l]) + b_o: (B, D), or (B, T, D) with all_positions."""
        return self.output(self.joint(sequences, all_positions))

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.items.scores(hidden)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, N + 1)
        return self.score(self.hidden(sequences))

    def contributions(self, sequences: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact split of every score into long-term, short-term and bias parts: each (B, N + 1).

        With W_o = [W_s | W_l] and z = [z_s ; z_l]: r_i = (W_s z_s).E_i + (W_l z_l).E_i + b_o.E_i.
        Column 0 (padding) is 0 in every part.
        """
        D = self.shape.embedding_dim
        z = self.joint(sequences)  # (B, 2D)
        items = self.items.all_items()  # (N + 1, D)
        weight = self.output.weight  # (D, 2D)
        short = (z[:, :D] @ weight[:, :D].T) @ items.T
        long = (z[:, D:] @ weight[:, D:].T) @ items.T
        bias = (self.output.bias @ items.T).expand_as(long)
        return long, short, bias


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_model(shape: ModelShape, features=(), device: torch.device | str = "cpu") -> AutoMLP:
    """A fresh model on `device`, with the data's item feature values loaded."""
    model = AutoMLP(shape).to(device)
    model.items.set_feature_values([torch.as_tensor(f.values) for f in features])
    return model
