"""The one set of number formatters for tables and reports (the report stage, the seeds and sweep
summaries, the README generator and the benches all use these)."""

from __future__ import annotations

from typing import Any, Optional

MISSING = "-"  # a cell with no value


def cell(value: Any, missing: str = MISSING) -> str:
    """A table cell: ints with thousands separators, floats to 2 decimals, None as `missing`."""
    if value is None:
        return missing
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:.2f}"
    return str(value)


def number(value: Optional[float], digits: int = 2, missing: str = MISSING) -> str:
    return missing if value is None else f"{value:.{digits}f}"


def spread(mean: float, sd: Optional[float], digits: int = 2) -> str:
    """`48.85 ± 2.55` (mean ± standard deviation), or the mean alone without a deviation."""
    return f"{mean:.{digits}f}" if sd is None else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def count_spread(mean: float, sd: Optional[float]) -> str:
    """`2,450 ± 300` (a count's mean ± standard deviation, whole numbers with thousands separators), or the
    mean alone without a deviation."""
    return f"{mean:,.0f}" if sd is None else f"{mean:,.0f} ± {sd:,.0f}"


def with_interval(value: float, low: Optional[float], high: Optional[float], digits: int = 2) -> str:
    """`39.19 [37.20, 41.10]`, or the value alone without an interval."""
    if low is None:
        return f"{value:.{digits}f}"
    return f"{value:.{digits}f} [{low:.{digits}f}, {high:.{digits}f}]"


def signed_interval(diff: float, low: float, high: float) -> str:
    """`+1.20 [-0.30, +2.70]`: a difference and its interval, signs always shown."""
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"


def percent_interval(mean: float, low: float, high: float) -> str:
    """`62% [48, 75]`."""
    return f"{mean:.0f}% [{low:.0f}, {high:.0f}]"


def ratio(value: Optional[float], missing: str = MISSING) -> str:
    """`2.20x`."""
    return missing if value is None else f"{value:.2f}x"


def human_bytes(n: Optional[float]) -> str:
    """`1.6 GB` (powers of 1000)."""
    if n is None:
        return MISSING
    for unit in ("B", "KB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return ""


def human_seconds(s: Optional[float]) -> str:
    """`95.0 s`, `31.3 min`, `4.2 h`, `2.0 d`."""
    if s is None:
        return MISSING
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "min"), (172800, 3600, "h")):
        if s < limit:
            return f"{s / div:.1f} {unit}"
    return f"{s / 86400:.1f} d"
