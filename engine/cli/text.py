"""Values from a store or a file shown on a terminal: one line each, whatever they hold."""

from __future__ import annotations

import datetime


def printable(value) -> str:
    """`value` as text that prints on one line and in reading order: control characters (a newline, a
    tab), bidirectional marks and other invisible format characters are written as escapes (`\\n`,
    `\\u200f`); everything else, accented letters and other scripts included, as it is."""
    text = str(value)
    if text.isprintable():  # False for any control, format (Cf: the bidi marks) or separator but space
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def utc_date(seconds: int | float) -> str:
    """The UTC date of a unix time, or the number of seconds itself when no calendar date can show it
    (before year 1 or after 9999, as a store written by an older release may hold)."""
    try:
        return str(datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).date())
    except (OverflowError, OSError, ValueError):
        return f"unix time {seconds:,} s"


def local_minute(seconds: int | float) -> str:
    """A local date and minute ("2026-12-03 14:05") of a unix time, as `utc_date` falls back."""
    try:
        return datetime.datetime.fromtimestamp(seconds).strftime("%Y-%m-%d %H:%M")
    except (OverflowError, OSError, ValueError):
        return f"unix time {seconds:,} s"
