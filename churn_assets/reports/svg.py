"""Small charts as inline SVG: a page that needs no script library and no network to draw them.

A plotting library would inline megabytes of JavaScript into every page; the brief needs five
chart shapes, drawn here in a few kilobytes each. Every data mark carries the class ``mark`` and
a ``<title>`` (the browser's tooltip), so a test can count what was drawn and a reader can hover
for the exact value. Missing values (None) leave gaps rather than drop to zero.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

PALETTE = ("#2f6fad", "#e07b39", "#3a9a5b", "#c8443f", "#7d5ba6", "#8c6d31", "#d16ba5",
           "#5f6b7a")
BAND_COLORS = {"low": "#3a9a5b", "medium": "#e0a030", "high": "#c8443f"}
WIDTH, HEIGHT = 640, 250
LEFT, RIGHT, TOP, BOTTOM = 66, 16, 14, 34

Format = Callable[[float], str]


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]
    color: str | None = None
    dashed: bool = False


@dataclass(frozen=True)
class Intervals:
    name: str
    values: Sequence[float | None]
    low: Sequence[float | None]
    high: Sequence[float | None]
    color: str | None = None


@dataclass(frozen=True)
class Reference:
    """A horizontal (or, in ``hbars``, vertical) line at ``value``, e.g. a threshold."""

    value: float
    label: str
    color: str = "#888"


def _plain(value: float) -> str:
    return f"{value:,.4g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return [0.0, 1.0]
    if high <= low:
        high = low + (abs(low) or 1.0)
    raw = (high - low) / max(count - 1, 1)
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    ticks = [round(math.floor(low / step) * step, 12)]
    # The last tick is the first at or above ``high``: nothing is drawn outside the axes.
    while ticks[-1] < high - step * 1e-9 or len(ticks) < 2:
        ticks.append(round(ticks[-1] + step, 12))
    return ticks


def _color(index: int, chosen: str | None) -> str:
    return chosen or PALETTE[index % len(PALETTE)]


def _present(values) -> list[float]:
    return [v for v in values if v is not None and math.isfinite(v)]


class _Frame:
    """Plot area geometry and axes for a chart with a category x axis and a numeric y axis."""

    def __init__(self, x_labels: Sequence[str], low: float, high: float, y_format: Format,
                 height: int = HEIGHT, zero: bool = True):
        self.labels, self.height, self.y_format = list(x_labels), height, y_format
        if zero:
            low, high = min(low, 0.0), max(high, 0.0)
        self.ticks = nice_ticks(low, high)
        self.low, self.high = self.ticks[0], self.ticks[-1]
        self.plot_w = WIDTH - LEFT - RIGHT
        self.plot_h = height - TOP - BOTTOM
        self.slot = self.plot_w / max(len(self.labels), 1)

    def x(self, index: float) -> float:
        return LEFT + (index + 0.5) * self.slot

    def y(self, value: float) -> float:
        span = (self.high - self.low) or 1.0
        return TOP + self.plot_h * (1 - (value - self.low) / span)

    def axes(self) -> list[str]:
        parts = []
        for tick in self.ticks:
            y = self.y(tick)
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'class="grid"/>')
            parts.append(f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" '
                         f'class="tick">{escape(self.y_format(tick))}</text>')
        every = max(1, math.ceil(len(self.labels) / 8))
        for i, label in enumerate(self.labels):
            if i % every == 0 or i == len(self.labels) - 1 and len(self.labels) <= 8:
                parts.append(f'<text x="{self.x(i):.1f}" y="{self.height - BOTTOM + 16}" '
                             f'text-anchor="middle" class="tick">{escape(label)}</text>')
        return parts

    def references(self, references: Sequence[Reference]) -> list[str]:
        parts = []
        for ref in references:
            y = self.y(ref.value)
            parts.append(f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" '
                         f'stroke="{ref.color}" stroke-dasharray="5 4" class="reference"/>')
            parts.append(f'<text x="{WIDTH - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" '
                         f'class="tick" fill="{ref.color}">{escape(ref.label)}</text>')
        return parts


def _svg(body: list[str], height: int, label: str, marks: int) -> str:
    return (f'<svg class="chart-svg" viewBox="0 0 {WIDTH} {height}" role="img" '
            f'aria-label="{escape(label)}" data-marks="{marks}" '
            f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')


def _legend(items: Sequence[tuple[str, str]]) -> str:
    if len(items) < 2:
        return ""
    spans = "".join(f'<span><i style="background:{c}"></i>{escape(n)}</span>' for n, c in items)
    return f'<div class="legend">{spans}</div>'


def figure(title: str, svg: str, legend: Sequence[tuple[str, str]] = (), note: str = "") -> str:
    """A chart with its title, legend and an optional note, as one ``<figure>``."""
    caption = f'<p class="note">{escape(note)}</p>' if note else ""
    return (f'<figure class="chart"><figcaption>{escape(title)}</figcaption>{svg}'
            f'{_legend(legend)}{caption}</figure>')


def line_chart(title: str, x_labels: Sequence[str], series: Sequence[Series],
               y_format: Format = _plain, references: Sequence[Reference] = (),
               zero: bool = True, note: str = "") -> str:
    values = [v for s in series for v in _present(s.values)] + [r.value for r in references]
    frame = _Frame(x_labels, min(values, default=0.0), max(values, default=1.0), y_format,
                   zero=zero)
    body, marks, legend = frame.axes() + frame.references(references), 0, []
    for i, s in enumerate(series):
        color = _color(i, s.color)
        legend.append((s.name, color))
        runs, current = [], []
        for j, v in enumerate(s.values):
            if v is None or not math.isfinite(v):
                runs, current = runs + [current] if current else runs, []
            else:
                current.append((frame.x(j), frame.y(v), j, v))
        runs += [current] if current else []
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        for run in runs:
            path = " ".join(f"{'M' if k == 0 else 'L'}{x:.1f},{y:.1f}"
                            for k, (x, y, _, _) in enumerate(run))
            body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"'
                        f'{dash}/>')
            for x, y, j, v in run:
                marks += 1
                body.append(f'<circle class="mark" cx="{x:.1f}" cy="{y:.1f}" r="{2.6 if len(run) < 40 else 1.6}" '
                            f'fill="{color}"><title>{escape(s.name)} · {escape(frame.labels[j])}: '
                            f'{escape(y_format(v))}</title></circle>')
    return figure(title, _svg(body, frame.height, title, marks), legend, note)


def stacked_bars(title: str, x_labels: Sequence[str], stacks: Sequence[Series],
                 y_format: Format = _plain, note: str = "") -> str:
    totals = [sum(v or 0.0 for v in column) for column in zip(*(s.values for s in stacks),
                                                              strict=True)] if stacks else []
    frame = _Frame(x_labels, 0.0, max(totals, default=1.0), y_format)
    body, marks, legend = frame.axes(), 0, []
    width = frame.slot * 0.72
    base = [0.0] * len(x_labels)
    for i, s in enumerate(stacks):
        color = _color(i, s.color)
        legend.append((s.name, color))
        for j, v in enumerate(s.values):
            if not v:
                continue
            top, bottom = frame.y(base[j] + v), frame.y(base[j])
            marks += 1
            body.append(f'<rect class="mark" x="{frame.x(j) - width / 2:.1f}" y="{top:.1f}" '
                        f'width="{width:.1f}" height="{max(bottom - top, 0.5):.1f}" '
                        f'fill="{color}"><title>{escape(s.name)} · {escape(frame.labels[j])}: '
                        f'{escape(y_format(v))}</title></rect>')
            base[j] += v
    return figure(title, _svg(body, frame.height, title, marks), legend, note)


def columns(title: str, x_labels: Sequence[str], values: Sequence[float | None],
            y_format: Format = _plain, references: Sequence[Reference] = (),
            colors: Sequence[str] | None = None, zero: bool = True,
            y_range: tuple[float, float] | None = None, note: str = "") -> str:
    present = _present(values) + [r.value for r in references] + list(y_range or ())
    frame = _Frame(x_labels, min(present, default=0.0), max(present, default=1.0), y_format,
                   zero=zero)
    body, marks = frame.axes(), 0
    width = frame.slot * 0.8
    floor = frame.y(max(frame.low, 0.0) if zero else frame.low)
    for j, v in enumerate(values):
        if v is None:
            continue
        top = frame.y(v)
        marks += 1
        color = colors[j] if colors else PALETTE[0]
        body.append(f'<rect class="mark" x="{frame.x(j) - width / 2:.1f}" '
                    f'y="{min(top, floor):.1f}" width="{width:.1f}" '
                    f'height="{max(abs(floor - top), 0.5):.1f}" fill="{color}"><title>'
                    f'{escape(frame.labels[j])}: {escape(y_format(v))}</title></rect>')
    body += frame.references(references)
    return figure(title, _svg(body, frame.height, title, marks), note=note)


def intervals(title: str, x_labels: Sequence[str], series: Sequence[Intervals],
              y_format: Format = _plain, note: str = "") -> str:
    """Estimates with their intervals (whiskers), one offset lane per series."""
    values = [v for s in series for v in (*_present(s.low), *_present(s.high), *_present(s.values))]
    frame = _Frame(x_labels, min(values, default=-0.1), max(values, default=0.1), y_format)
    body = frame.axes() + frame.references([Reference(0.0, "no effect", "#555")])
    marks, legend = 0, []
    lanes = max(len(series), 1)
    for i, s in enumerate(series):
        color = _color(i, s.color)
        legend.append((s.name, color))
        offset = (i - (lanes - 1) / 2) * min(frame.slot / (lanes + 1), 10)
        for j, (v, lo, hi) in enumerate(zip(s.values, s.low, s.high, strict=True)):
            if v is None:
                continue
            x = frame.x(j) + offset
            if lo is not None and hi is not None:
                body.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{frame.y(lo):.1f}" '
                            f'y2="{frame.y(hi):.1f}" stroke="{color}" stroke-width="1.5"/>')
            marks += 1
            span = f" ({y_format(lo)} to {y_format(hi)})" if lo is not None and hi is not None else ""
            body.append(f'<circle class="mark" cx="{x:.1f}" cy="{frame.y(v):.1f}" r="3.5" '
                        f'fill="{color}"><title>{escape(s.name)} · {escape(frame.labels[j])}: '
                        f'{escape(y_format(v) + span)}</title></circle>')
    return figure(title, _svg(body, frame.height, title, marks), legend, note)


def hbars(title: str, labels: Sequence[str], values: Sequence[float], value_format: Format = _plain,
          references: Sequence[Reference] = (), colors: Sequence[str] | None = None,
          note: str = "") -> str:
    """Horizontal bars, largest first as given, with vertical reference lines."""
    row, left = 20, 190
    height = TOP + BOTTOM + row * max(len(labels), 1)
    high = max([*values, *(r.value for r in references)], default=1.0) or 1.0
    ticks = nice_ticks(0.0, high, 4)
    plot_w = WIDTH - left - RIGHT - 40

    def x(v: float) -> float:
        return left + plot_w * v / ticks[-1]

    body, marks = [], 0
    for tick in ticks:
        body.append(f'<line x1="{x(tick):.1f}" x2="{x(tick):.1f}" y1="{TOP}" '
                    f'y2="{height - BOTTOM}" class="grid"/>')
        body.append(f'<text x="{x(tick):.1f}" y="{height - BOTTOM + 16}" text-anchor="middle" '
                    f'class="tick">{escape(value_format(tick))}</text>')
    for i, (label, v) in enumerate(zip(labels, values, strict=True)):
        y = TOP + i * row
        color = colors[i] if colors else PALETTE[0]
        marks += 1
        body.append(f'<text x="{left - 6}" y="{y + row * 0.68:.1f}" text-anchor="end" '
                    f'class="label">{escape(label)}</text>')
        body.append(f'<rect class="mark" x="{left}" y="{y + 3}" width="{max(x(v) - left, 0.5):.1f}" '
                    f'height="{row - 6}" fill="{color}"><title>{escape(label)}: '
                    f'{escape(value_format(v))}</title></rect>')
        body.append(f'<text x="{x(v) + 4:.1f}" y="{y + row * 0.68:.1f}" class="value">'
                    f'{escape(value_format(v))}</text>')
    for ref in references:
        body.append(f'<line x1="{x(ref.value):.1f}" x2="{x(ref.value):.1f}" y1="{TOP - 4}" '
                    f'y2="{height - BOTTOM}" stroke="{ref.color}" stroke-dasharray="5 4"/>')
        body.append(f'<text x="{x(ref.value) + 3:.1f}" y="{TOP + 6}" class="tick" '
                    f'fill="{ref.color}">{escape(ref.label)}</text>')
    return figure(title, _svg(body, height, title, marks), note=note)


def xy_chart(title: str, series: Sequence[tuple[str, Sequence[float], Sequence[float]]],
             x_label: str, y_label: str, value_format: Format = _plain, diagonal: bool = True,
             note: str = "") -> str:
    """Points joined by lines on [0, 1] x [0, 1] (calibration curves), with the diagonal."""
    size = 250
    plot = size - TOP - BOTTOM

    def px(v: float) -> float:
        return LEFT + plot * v

    def py(v: float) -> float:
        return TOP + plot * (1 - v)

    body, marks, legend = [], 0, []
    for t in (0.0, 0.25, 0.5, 0.75, 1.0):
        body.append(f'<line x1="{LEFT}" x2="{px(1):.1f}" y1="{py(t):.1f}" y2="{py(t):.1f}" class="grid"/>')
        body.append(f'<text x="{LEFT - 6}" y="{py(t) + 4:.1f}" text-anchor="end" class="tick">'
                    f'{escape(value_format(t))}</text>')
        body.append(f'<text x="{px(t):.1f}" y="{size - BOTTOM + 16}" text-anchor="middle" '
                    f'class="tick">{escape(value_format(t))}</text>')
    if diagonal:
        body.append(f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1):.1f}" y2="{py(1):.1f}" '
                    f'stroke="#999" stroke-dasharray="5 4"/>')
    body.append(f'<text x="{px(0.5):.1f}" y="{size - 2}" text-anchor="middle" class="tick">'
                f'{escape(x_label)}</text>')
    body.append(f'<text x="{px(1) + 8:.1f}" y="{py(0.5):.1f}" class="tick">{escape(y_label)}</text>')
    for i, (name, xs, ys) in enumerate(series):
        color = _color(i, None)
        legend.append((name, color))
        path = " ".join(f"{'M' if k == 0 else 'L'}{px(a):.1f},{py(b):.1f}"
                        for k, (a, b) in enumerate(zip(xs, ys, strict=True)))
        body.append(f'<path d="{path}" fill="none" stroke="{color}" stroke-width="2"/>')
        for a, b in zip(xs, ys, strict=True):
            marks += 1
            body.append(f'<circle class="mark" cx="{px(a):.1f}" cy="{py(b):.1f}" r="3" '
                        f'fill="{color}"><title>{escape(name)}: predicted {escape(value_format(a))}, '
                        f'observed {escape(value_format(b))}</title></circle>')
    svg = (f'<svg class="chart-svg square" viewBox="0 0 {LEFT + plot + 70} {size}" role="img" '
           f'aria-label="{escape(title)}" data-marks="{marks}" '
           f'xmlns="http://www.w3.org/2000/svg">{"".join(body)}</svg>')
    return figure(title, svg, legend, note)
