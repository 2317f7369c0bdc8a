"""The Runs page's table of where short-term interest helps: the selected run's test metrics per
history-length bucket, for the model and for its long-term module alone (engine.evaluation.by_length)."""

from __future__ import annotations

from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

COLUMNS = ("History", "Users", "NDCG@10", "HR@10", "Long-term only\nNDCG@10", "Short-term\ngain")


class LengthBucketsTable(QTableWidget):
    """Empty (and hidden) unless one run with per-length metrics is selected."""

    def __init__(self) -> None:
        super().__init__(0, len(COLUMNS))
        self.setHorizontalHeaderLabels(COLUMNS)
        self.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.setToolTip("test metrics [full ranking] by the number of items a user had before the target; "
                        "the gain is the model's NDCG@10 minus its long-term module's alone")
        self.setVisible(False)

    def show_run(self, metrics: dict | None) -> None:
        rows = (metrics or {}).get("by_length") or []
        # an exhaustive run also has each candidate length's own model: one column per length
        candidates = list(rows[0].get("per_candidate", {})) if rows else []
        self.setColumnCount(len(COLUMNS) + len(candidates))
        self.setHorizontalHeaderLabels([*COLUMNS, *(f"k = {k} alone\nNDCG@10" for k in candidates)])
        self.setRowCount(len(rows))
        for index, row in enumerate(rows):
            long_term = row.get("long_term_only")
            cells = [row["bucket"], str(row["users"]), f"{row['model']['NDCG@10']:.4f}",
                     f"{row['model']['HR@10']:.4f}",
                     f"{long_term['NDCG@10']:.4f}" if long_term else "-",
                     f"{row['short_term_gain']:+.4f}" if long_term else "-",
                     *(f"{row['per_candidate'][k]:.4f}" for k in candidates)]
            for column, text in enumerate(cells):
                self.setItem(index, column, QTableWidgetItem(text))
        self.setVisible(bool(rows))
