"""The item embedding both models share (ids fused with item features), and the shape it needs."""

from __future__ import annotations

from typing import Protocol

import torch
from torch import nn


class ItemShape(Protocol):
    """What an item embedding needs of a model's shape (AutoMLP's ModelShape and SASRecShape have it)."""

    n_items: int
    embedding_dim: int
    feature_sizes: tuple[int, ...]
    feature_widths: tuple[int, ...]


class ItemEmbedding(nn.Module):
    """Item vectors: the id embedding, fused with one embedding per item feature (paper 2.3.1).

    Multi-valued features (genres) average their values' embeddings. Without features the id embedding
    is used as it is. Row 0 (padding) is always zero.
    """

    def __init__(self, shape: ItemShape) -> None:
        super().__init__()
        dim = shape.embedding_dim
        self.ids = nn.Embedding(shape.n_items + 1, dim, padding_idx=0)
        self.features = nn.ModuleList(nn.Embedding(size + 1, dim, padding_idx=0) for size in shape.feature_sizes)
        for table in [self.ids, *self.features]:
            # N(0, 1), torch's default, did not learn in the first epoch; 0.02 does (DESIGN, pitfalls).
            nn.init.normal_(table.weight, std=0.02)
            with torch.no_grad():
                table.weight[0].zero_()
        self.fuse = nn.Linear(dim * (1 + len(self.features)), dim) if self.features else None
        self.register_buffer("feature_values", torch.zeros(shape.n_items + 1, max(shape.feature_widths, default=0),
                                                           dtype=torch.long), persistent=False)
        self._feature_slices = []
        start = 0
        for width in shape.feature_widths:
            self._feature_slices.append((start, start + width))
            start += width

    def set_feature_values(self, tables: list[torch.Tensor]) -> None:
        """Loads each feature's (N + 1, width) value ids; they are data, not weights."""
        if tables:
            self.feature_values = torch.cat(tables, dim=1).to(self.ids.weight.device)

    def all_items(self) -> torch.Tensor:  # (N + 1, D)
        vectors = self.ids.weight
        if self.fuse is None:
            return vectors
        parts = [vectors]
        for table, (start, end) in zip(self.features, self._feature_slices):
            values = self.feature_values[:, start:end]  # (N + 1, width)
            counts = (values > 0).sum(dim=1, keepdim=True).clamp(min=1)
            parts.append(table(values).sum(dim=1) / counts)  # padding rows are zero vectors
        fused = self.fuse(torch.cat(parts, dim=1))
        not_padding = torch.ones_like(fused[:, :1])
        not_padding[0] = 0
        return fused * not_padding

    def scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """(..., D) -> (..., N + 1) scores h . E_i (Eq. 8 before softmax); column 0 (padding) is -inf."""
        scores = hidden @ self.all_items().T
        scores[..., 0] = float("-inf")
        return scores
