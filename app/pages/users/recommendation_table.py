"""The Users page's top-N: each score with its long, short and bias parts, a stacked long|short bar per row
(bar_segments, PartsDelegate), the test item marked, and the top-N by the long-term part alone beside it."""

from __future__ import annotations

from PySide6.QtCore import QRect, Qt
from PySide6.QtGui import QBrush, QFont, QPainter
from PySide6.QtWidgets import (
    QHeaderView,
    QLabel,
    QSplitter,
    QStyledItemDelegate,
    QVBoxLayout,
    QWidget,
)

from app.pages.users.cells import MARK_ROLE, cell, read_only_table
from app.theme import colour

# Colours are the theme's (resources/themes/palette.toml): test_item, score_long, score_short.
PARTS_ROLE = Qt.ItemDataRole.UserRole + 1  # (long, short) of a top-N row, for the bar delegate

TOP_COLUMNS = ("Rank", "Item", "Title", "Score", "Long", "Short", "Bias", "Long | short", "Moved")
LONG_COLUMNS = ("Rank", "Item", "Title", "In combined")
BAR_COLUMN = TOP_COLUMNS.index("Long | short")
TITLE_COLUMN = TOP_COLUMNS.index("Title")
MOVED_COLUMN = TOP_COLUMNS.index("Moved")
TITLE_WIDTH = 160  # most a title takes, so that a long one does not push the bars behind a scrollbar
BAR_MIN_WIDTH = 120
MIN_ROWS = 5  # top-N rows always shown
MOVED_TIP = ("Places the short-term part moved this item up (+) or down (-): its rank by the long-term part "
             "alone minus its rank by the whole score")


def bar_range(scale: float) -> str:
    """The values at the bar column's left and right edges (the zero line is in the middle)."""
    return f"-{scale:.3g} … +{scale:.3g}"


def bar_segments(long: float, short: float, rect: QRect, scale: float) -> list[tuple[QRect, str]]:
    """The stacked bar of one row: the long part from the zero line (the rect's centre), the short part
    stacked on its end; `scale` is the largest |long| + |short| of the table. [(rect, "long"|"short")]."""
    half = max(rect.width() // 2 - 2, 1)
    zero = rect.left() + rect.width() // 2
    unit = half / scale if scale > 0 else 0.0
    segments = []
    start = 0.0
    for value, part in ((long, "long"), (short, "short")):
        a, b = zero + start * unit, zero + (start + value) * unit
        left, right = int(round(min(a, b))), int(round(max(a, b)))
        segments.append((QRect(left, rect.top() + 3, max(right - left, 1), max(rect.height() - 6, 1)), part))
        start += value
    return segments


def legend_text() -> str:
    """The legend of the bars and of the test item's mark, in the current theme's colours."""
    return (f'<span style="color:{colour("score_long").name()}">■</span> long-term part &nbsp; '
            f'<span style="color:{colour("score_short").name()}">■</span> short-term part, stacked from the '
            'zero line; score = long + short + bias &nbsp; '
            f'<span style="background:{colour("test_item").name()}">&nbsp;test item&nbsp;</span>')


class PartsDelegate(QStyledItemDelegate):
    """Paints (long, short) of PARTS_ROLE as a stacked horizontal bar around a zero line."""

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.scale = 1.0

    def paint(self, painter: QPainter, option, index) -> None:
        super().paint(painter, option, index)
        parts = index.data(PARTS_ROLE)
        if not parts:
            return
        painter.save()
        for rect, part in bar_segments(parts[0], parts[1], option.rect, self.scale):
            painter.fillRect(rect, colour("score_long" if part == "long" else "score_short"))
        x = option.rect.left() + option.rect.width() // 2
        painter.setPen(option.palette.text().color())
        painter.drawLine(x, option.rect.top() + 1, x, option.rect.bottom() - 1)
        painter.restore()


class RecommendationTable(QWidget):
    """The test item's line, how far the short-term part moved the ranking, a legend, and the two top-N tables:
    `table` by the whole score (with the bars), `long_table` by the long-term part alone."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.target_label = QLabel("")
        self.target_label.setWordWrap(True)  # these lines wrap in a narrow window instead of widening the page
        self.summary_label = QLabel("")
        self.summary_label.setWordWrap(True)
        self.rec = None  # the Recommendations shown
        self.legend = QLabel(legend_text())
        self.legend.setWordWrap(True)  # else its one line sets the whole window's minimum width
        self.scale_label = QLabel("")
        self.scale_label.setWordWrap(True)
        self.table = read_only_table(TOP_COLUMNS)
        self.parts_delegate = PartsDelegate(self.table)
        self.table.setItemDelegateForColumn(BAR_COLUMN, self.parts_delegate)
        header = self.table.horizontalHeader()
        header.setMinimumSectionSize(30)
        # the bars take what the numbers leave: the columns fit the table instead of scrolling sideways
        header.setSectionResizeMode(BAR_COLUMN, QHeaderView.ResizeMode.Stretch)
        self.table.setWordWrap(False)  # a capped title elides on one line instead of doubling the row
        self.table.setMinimumWidth(0)
        # at least MIN_ROWS rows in any window: the page scrolls before the top-N shrinks below them
        self.table.setMinimumHeight(self.table.horizontalHeader().sizeHint().height()
                                    + MIN_ROWS * self.table.verticalHeader().defaultSectionSize()
                                    + self.table.horizontalScrollBar().sizeHint().height() + 4)
        self.table.horizontalHeaderItem(MOVED_COLUMN).setToolTip(MOVED_TIP)
        self.table.horizontalHeaderItem(BAR_COLUMN).setToolTip(
            "Blue = long-term part, orange = short-term part, stacked from the zero line in the middle; "
            "half the column's width stands for the largest |long| + |short| of the table")
        self.table.setToolTip("Long | short: blue = long-term part, orange = short-term part, stacked from "
                                  "the zero line; the bias is listed apart")
        self.long_table = read_only_table(LONG_COLUMNS)
        self.long_table.setWordWrap(False)
        # the narrow side table: its titles take what is left, elided, instead of a sideways scrollbar
        self.long_table.horizontalHeader().setSectionResizeMode(LONG_COLUMNS.index("Title"),
                                                                QHeaderView.ResizeMode.Stretch)
        self.long_table.horizontalHeader().setMinimumSectionSize(20)
        tables = QSplitter(Qt.Orientation.Horizontal)
        tables.addWidget(self.table)
        long_box = QWidget()
        column = QVBoxLayout(long_box)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(QLabel("Top N by the long-term part alone"))
        column.addWidget(self.long_table, 1)
        tables.addWidget(long_box)
        tables.setStretchFactor(0, 3)
        tables.setStretchFactor(1, 1)
        column = QVBoxLayout(self)
        column.setContentsMargins(0, 0, 0, 0)
        column.addWidget(self.target_label)
        column.addWidget(self.summary_label)
        column.addWidget(self.legend)
        column.addWidget(self.scale_label)
        column.addWidget(tables, 1)

    def show_recommendations(self, rec) -> None:
        """Shows a Recommendations: both top-N tables, the test item's rank, and what the short-term part moved."""
        self.rec = rec
        self.table.setRowCount(0)
        self.long_table.setRowCount(0)
        self._show_top(rec)
        target = rec.target
        self.target_label.setText(
            f"User {rec.user_id}: held-out test item {target.item_id}"
            + (f" ({target.title})" if target.title else "")
            + f" ranked {target.rank + 1} of {rec.candidates} — {'hit' if rec.hit else 'miss'} in the top {rec.n}")
        moved_in = sum(1 for r in rec.items if r.long_rank >= rec.n)
        self.summary_label.setText(
            f"The top {rec.n} by the long-term part alone shares {rec.overlap} of {rec.n} items with the combined "
            f"top {rec.n}: the short-term part (window k = {rec.window}) brought in {moved_in} "
            f"item{'s' if moved_in != 1 else ''} from outside the long-term top {rec.n}.")

    def restyle(self) -> None:
        """Draws the legend and the marked test item again in the current theme's colours."""
        self.legend.setText(legend_text())
        if self.rec is not None:
            self.show_recommendations(self.rec)

    def clear(self) -> None:
        self.rec = None
        self.table.setRowCount(0)
        self.long_table.setRowCount(0)
        self.target_label.setText("")
        self.summary_label.setText("")
        self.scale_label.setText("")
        self.table.horizontalHeaderItem(BAR_COLUMN).setText(TOP_COLUMNS[BAR_COLUMN])

    def _show_top(self, rec) -> None:
        target, target_brush = rec.target.item, QBrush(colour("test_item"))
        self.parts_delegate.scale = max((abs(r.long) + abs(r.short) for r in rec.items), default=1.0)
        scale = bar_range(self.parts_delegate.scale)
        self.table.horizontalHeaderItem(BAR_COLUMN).setText(f"Long | short ±{self.parts_delegate.scale:.3g}")
        self.scale_label.setText(f"Bar scale: the column's edges are {scale}, its middle is 0.")
        self.table.setRowCount(len(rec.items))
        bold = QFont()
        bold.setBold(True)
        for row, (r, moved) in enumerate(rec.rank_changes()):
            is_target = r.item == target
            cells = [cell(r.rank + 1), cell(r.item_id), cell(r.title), cell(r.score), cell(r.long),
                     cell(r.short), cell(r.bias), cell(""), cell(f"{moved:+d}" if moved else "0")]
            if r.title:
                cells[TITLE_COLUMN].setToolTip(r.title)  # the column is capped: a long title is elided
            cells[BAR_COLUMN].setData(PARTS_ROLE, (r.long, r.short))
            cells[BAR_COLUMN].setToolTip(f"long {r.long:.4f} + short {r.short:.4f} (+ bias {r.bias:.4f})")
            cells[-1].setToolTip(f"rank {r.long_rank + 1} by the long-term part alone, {r.rank + 1} by the "
                                 f"whole score")
            for column, item in enumerate(cells):
                item.setData(MARK_ROLE, is_target)
                if is_target:
                    item.setBackground(target_brush)
                    item.setFont(bold)
                    item.setToolTip("the held-out test item")
                self.table.setItem(row, column, item)
        combined = {r.item for r in rec.items}
        self.long_table.setRowCount(len(rec.long_term_items))
        for row, r in enumerate(rec.long_term_items):
            cells = [cell(r.rank + 1), cell(r.item_id), cell(r.title), cell("yes" if r.item in combined else "")]
            for column, item in enumerate(cells):
                if r.item == target:
                    item.setBackground(target_brush)
                self.long_table.setItem(row, column, item)
        self.table.resizeColumnsToContents()
        self.table.setColumnWidth(TITLE_COLUMN, min(self.table.columnWidth(TITLE_COLUMN), TITLE_WIDTH))
        for column in range(len(LONG_COLUMNS)):  # not the stretched title: sized to its text, it overflowed
            if column != LONG_COLUMNS.index("Title"):
                self.long_table.resizeColumnToContents(column)
