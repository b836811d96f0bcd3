"""Line charts as plain geometry for a server-side SVG (templates/_chart.html draws them): the
x axis is the last `span` seconds up to `now`, the y axis runs from 0 to a round maximum. A gap
in the data (None: Redis was not sampled) breaks a line; a lone point becomes a dot. Nothing in
a chart comes from user data but numbers and the caller's own labels."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import attrs

WIDTH, HEIGHT = 480, 150
LEFT, RIGHT, TOP, BOTTOM = 56, 8, 10, 20  # margins for the axis labels

Point = tuple[float, float | None]  # (unix time, value or None for a gap)


@attrs.frozen
class Line:
    name: str
    tone: str  # a CSS class: the series' colour
    segments: tuple[tuple[tuple[float, float], ...], ...]  # runs of (x, y) without a gap
    last: float | None  # the newest value, for the legend
    last_label: str = ""  # `last`, formatted
    dashed: bool = False

    def points(self, segment: tuple[tuple[float, float], ...]) -> str:
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in segment)


@attrs.frozen
class Chart:
    title: str
    lines: tuple[Line, ...]
    y_max: float
    grid: tuple[tuple[float, str], ...]  # (y, label) of each horizontal rule
    x_labels: tuple[tuple[float, str], ...]
    empty: bool  # no value at all: the template says so instead of drawing
    width: int = WIDTH
    height: int = HEIGHT
    plot_left: int = LEFT
    plot_right: int = WIDTH - RIGHT


def nice_max(value: float) -> float:
    """The smallest of 1, 2, 2.5, 5 times a power of ten that is >= value (1 for nothing)."""
    if not value > 0 or math.isinf(value) or math.isnan(value):
        return 1.0
    power = 10.0 ** math.floor(math.log10(value))
    for step in (1.0, 2.0, 2.5, 5.0):
        if value <= step * power * (1 + 1e-9):
            return step * power
    return 10.0 * power


def _before(seconds: float) -> str:
    return f"−{seconds:.0f} s" if seconds < 120 else f"−{seconds / 60:.0f} min"


def chart_span(
    oldest: float | None, now: float, *, least: float = 60.0, most: float = 3600.0
) -> float:
    """The x axis: the history there is (a young process has little), within [least, most]."""
    if oldest is None:
        return most
    return min(most, max(least, now - oldest))


def _x(at: float, now: float, span: float) -> float:
    share = min(1.0, max(0.0, 1 - (now - at) / span))
    return LEFT + share * (WIDTH - RIGHT - LEFT)


def _y(value: float, y_max: float) -> float:
    return TOP + (1 - min(value, y_max) / y_max) * (HEIGHT - BOTTOM - TOP)


def _segments(
    points: Sequence[Point], now: float, span: float, y_max: float
) -> tuple[tuple[tuple[float, float], ...], ...]:
    runs: list[tuple[tuple[float, float], ...]] = []
    current: list[tuple[float, float]] = []
    for at, value in points:
        if now - at > span:
            continue
        if value is None:
            if current:
                runs.append(tuple(current))
            current = []
            continue
        current.append((_x(at, now, span), _y(value, y_max)))
    if current:
        runs.append(tuple(current))
    return tuple(runs)


def line_chart(
    title: str,
    series: Sequence[tuple[str, str, Sequence[Point]]],
    *,
    now: float,
    span: float = 3600.0,
    fmt: Callable[[float], str] = lambda v: f"{v:g}",
    dashed: Sequence[str] = (),
    unit: float = 1.0,
) -> Chart:
    """A chart of `series` (name, tone, points) over the `span` seconds before `now`; the
    series named in `dashed` (a limit, e.g. maxmemory) are drawn dashed; the y axis ends on a
    round number of `unit`s (e.g. 1024² for bytes shown in MB)."""
    values = [v for _, _, pts in series for at, v in pts if v is not None and now - at <= span]
    y_max = nice_max(max(values, default=0.0) / unit) * unit
    lines = []
    for name, tone, points in series:
        last = next((v for _, v in reversed(points) if v is not None), None)
        segments = _segments(points, now, span, y_max)
        label = "" if last is None else fmt(last)
        lines.append(Line(name, tone, segments, last, label, dashed=name in dashed))
    grid = tuple((_y(y_max * f, y_max), fmt(y_max * f)) for f in (0.0, 0.5, 1.0))
    x_labels = (
        (float(LEFT), _before(span)),
        ((LEFT + WIDTH - RIGHT) / 2, _before(span / 2)),
        (float(WIDTH - RIGHT), "now"),
    )
    return Chart(title, tuple(lines), y_max, grid, x_labels, empty=not values)
