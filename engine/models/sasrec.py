"""SASRec (Kang & McAuley, ICDM 2018): the self-attention baseline AutoMLP is compared with (issue 6).

Item embedding (the same `ItemEmbedding` as AutoMLP, scaled by sqrt(D)) plus a learned positional
embedding, L causal self-attention blocks with a pointwise feed-forward network, dropout, a final
LayerNorm, and scores against the shared item embedding. Two variants (`VARIANTS`): "pre_norm", the
textbook pre-LayerNorm transformer block with the FFN as wide as AutoMLP's R_c, and "sasrec_plus", pmixer's
SASRec.pytorch as SASRec+ (Klenitskiy & Vasilev, RecSys 2023) trains it, to reproduce its figures. It offers the interface that the engine's
training and evaluation code uses for AutoMLP (`hidden`, `score`, `items.all_items()`, `shape.max_length`,
`arch_parameters()`, `network_parameters()`, `forward` at the last position), so that `batch_loss`,
`training_batches` and `evaluate` train and measure both models with the same code.

Shapes: B batch, T max length, D embedding size, H heads, N items (internal ids 1..N, 0 pads). Inputs are
left-padded, so the most recent item sits at the last position and positions count back from it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from engine.core.config import RunConfig
from engine.models.embedding import ItemEmbedding

# "pre_norm": x + Attention(LN(x)), then x + FFN(LN(x)), FFN width R_c, torch's default Linear init, and
#   positions counted back from the most recent item.
# "sasrec_plus": q = LN(x) with keys and values from x itself, h = q + Attention; then LN(h) + FFN(LN(h)),
#   FFN width D, weights N(0, 0.02) but for the Xavier q/k/v projection, zero biases, LayerNorm eps 1e-8,
#   and positions counted from the window's first item, so that a position means the same at every query of
#   a training window as at inference (SASRec.pytorch, as SASRec+ trains it).
VARIANTS = ("pre_norm", "sasrec_plus")


@dataclass(frozen=True)
class SASRecShape:
    """Everything needed to rebuild a SASRec model; `from_config` takes the sizes AutoMLP uses."""

    n_items: int
    max_length: int  # T
    num_layers: int  # L blocks
    embedding_dim: int  # D
    ffn_hidden: int  # the feed-forward network's width: R_c for "pre_norm", D for "sasrec_plus"
    num_heads: int
    dropout: float
    feature_sizes: tuple[int, ...] = ()  # item features, fused into the item vectors as AutoMLP does
    feature_widths: tuple[int, ...] = ()
    variant: str = "pre_norm"  # one of VARIANTS

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown SASRec variant {self.variant!r}: choose one of {', '.join(VARIANTS)}")

    @classmethod
    def from_config(cls, config: RunConfig, n_items: int, features=(), num_heads: int = 1,
                    variant: str = "pre_norm") -> "SASRecShape":
        if config.max_length == "auto":
            raise ValueError('max_length is "auto": fit it to the data first (engine.training.runner.fit_to_data)')
        if config.embedding_dim % num_heads:
            raise ValueError(f"embedding_dim {config.embedding_dim} is not divisible by {num_heads} heads")
        ffn_hidden = config.embedding_dim if variant == "sasrec_plus" else config.channel_hidden
        return cls(n_items=n_items, max_length=config.max_length, num_layers=config.num_layers,
                   embedding_dim=config.embedding_dim, ffn_hidden=ffn_hidden, num_heads=num_heads,
                   dropout=config.dropout, feature_sizes=tuple(len(f.vocabulary) for f in features),
                   feature_widths=tuple(f.values.shape[1] for f in features), variant=variant)


def attention_mask(real: torch.Tensor) -> torch.Tensor:
    """(B, T) bool, True at items -> (B, 1, T, T) bool, True where query t may read key s.

    Causal (s <= t) and never a padding key, except that every position reads itself: a padding query
    then has one key instead of none, so a fully padded row gives finite outputs, not NaN.
    """
    T = real.shape[1]
    causal = torch.ones(T, T, dtype=torch.bool, device=real.device).tril()
    itself = torch.eye(T, dtype=torch.bool, device=real.device)
    return (causal & (real[:, None, :] | itself))[:, None]  # (B, 1, T, T)


class SelfAttention(nn.Module):
    """Multi-head causal self-attention through torch's fused scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int, dropout: float) -> None:
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.qkv = nn.Linear(dim, 3 * dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False,
                keys: torch.Tensor | None = None) -> torch.Tensor:
        """x (B, T, D), mask (B, 1, T, T) -> (B, T, D); with last_only the last query only: (B, 1, D).

        Queries, keys and values are read from x, or the keys and values from `keys` (B, T, D) when given.
        """
        B, T, D = x.shape
        if keys is None:
            q, k, v = self.qkv(x).split(D, dim=-1)  # each (B, T, D)
        else:
            q = F.linear(x, self.qkv.weight[:D], self.qkv.bias[:D])
            k, v = F.linear(keys, self.qkv.weight[D:], self.qkv.bias[D:]).split(D, dim=-1)
        if last_only:
            q, mask = q[:, -1:], mask[:, :, -1:]

        def heads(t: torch.Tensor) -> torch.Tensor:  # (B, n, D) -> (B, H, n, D/H)
            return t.reshape(B, t.shape[1], self.heads, D // self.heads).transpose(1, 2)

        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask,
                                           dropout_p=self.dropout if self.training else 0.0)
        return self.out(y.transpose(1, 2).reshape(B, -1, D))


class Block(nn.Module):
    """Self-attention, then SASRec's pointwise feed-forward network with ReLU, in a VARIANTS form."""

    def __init__(self, shape: SASRecShape) -> None:
        super().__init__()
        D = shape.embedding_dim
        self.sasrec_plus = shape.variant == "sasrec_plus"
        eps = 1e-8 if self.sasrec_plus else 1e-5
        self.attention_norm = nn.LayerNorm(D, eps=eps)
        self.attention = SelfAttention(D, shape.num_heads, shape.dropout)
        self.ffn_norm = nn.LayerNorm(D, eps=eps)
        self.ffn = nn.Sequential(nn.Linear(D, shape.ffn_hidden), nn.ReLU(), nn.Dropout(shape.dropout),
                                 nn.Linear(shape.ffn_hidden, D))
        self.dropout = nn.Dropout(shape.dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor, last_only: bool = False) -> torch.Tensor:
        """(B, T, D) -> (B, T, D), or (B, 1, D) with last_only."""
        if self.sasrec_plus:
            queries = self.attention_norm(x)
            # SASRec.pytorch adds no dropout to the attention's output, only to its weights.
            x = (queries[:, -1:] if last_only else queries) + self.attention(queries, mask, last_only, keys=x)
            x = self.ffn_norm(x)
            return x + self.dropout(self.ffn(x))
        attended = self.attention(self.attention_norm(x), mask, last_only)
        x = (x[:, -1:] if last_only else x) + self.dropout(attended)
        return x + self.dropout(self.ffn(self.ffn_norm(x)))


class SASRec(nn.Module):
    """The baseline, with AutoMLP's interface: no architecture weights, scores h . E_i with column 0 = -inf."""

    alpha = None  # nothing to search

    def __init__(self, shape: SASRecShape) -> None:
        super().__init__()
        self.shape = shape
        self.items = ItemEmbedding(shape)  # reads n_items, embedding_dim and the feature sizes only
        self.positions = nn.Embedding(shape.max_length, shape.embedding_dim)
        nn.init.normal_(self.positions.weight, std=0.02)
        self.input_dropout = nn.Dropout(shape.dropout)
        self.blocks = nn.ModuleList(Block(shape) for _ in range(shape.num_layers))
        self.final_norm = nn.LayerNorm(shape.embedding_dim, eps=1e-8 if shape.variant == "sasrec_plus" else 1e-5)
        if shape.variant == "sasrec_plus":
            for block in self.blocks:
                # torch's MultiheadAttention, which SASRec.pytorch uses, keeps its input projection
                # Xavier-uniform; SASRec+ draws every other Linear (and Conv1d) from N(0, 0.02).
                nn.init.xavier_uniform_(block.attention.qkv.weight)
                for linear in (block.attention.out, block.ffn[0], block.ffn[3]):
                    nn.init.normal_(linear.weight, std=0.02)
                for linear in (block.attention.qkv, block.attention.out, block.ffn[0], block.ffn[3]):
                    nn.init.zeros_(linear.bias)

    def arch_parameters(self) -> list[nn.Parameter]:
        return []

    def network_parameters(self) -> list[nn.Parameter]:
        return list(self.parameters())

    def hidden(self, sequences: torch.Tensor, all_positions: bool = False) -> torch.Tensor:
        """(B, T) left-padded item ids -> (B, D) at the last position, or (B, T, D) with all_positions.

        T may be shorter than max_length. Positions count back from the most recent item ("pre_norm") or
        from the first item ("sasrec_plus"); either way they ignore the leading padding.
        """
        T = sequences.shape[1]
        x = self.items.all_items()[sequences] * math.sqrt(self.shape.embedding_dim)  # (B, T, D)
        if self.shape.variant == "sasrec_plus":
            padding = T - (sequences > 0).sum(dim=1, keepdim=True)  # (B, 1)
            from_first = (torch.arange(T, device=sequences.device) - padding).clamp(min=0)  # (B, T)
            x = x + self.positions(from_first)
        else:
            x = x + self.positions.weight[self.shape.max_length - T:]
        x = self.input_dropout(x)
        mask = attention_mask(sequences > 0)  # (B, 1, T, T)
        for index, block in enumerate(self.blocks):
            # The last position needs every position of the earlier blocks, but only itself of the last one.
            x = block(x, mask, last_only=not all_positions and index == len(self.blocks) - 1)
        x = self.final_norm(x)
        return x if all_positions else x[:, -1]

    def score(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.items.scores(hidden)

    def forward(self, sequences: torch.Tensor) -> torch.Tensor:  # (B, T) -> (B, N + 1)
        return self.score(self.hidden(sequences))


def build_sasrec(shape: SASRecShape, features=(), device: torch.device | str = "cpu") -> SASRec:
    """A fresh model on `device`, with the data's item feature values loaded."""
    model = SASRec(shape).to(device)
    model.items.set_feature_values([torch.as_tensor(f.values) for f in features])
    return model
