"""Draw a :class:`~raftnet.sim.timeline.Timeline` as a standalone SVG (or an
HTML page embedding it), with no dependencies.

Layout, top to bottom (x is virtual time, 0..end, over ``width`` pixels):

* header: seed, node count and time span; below it a legend of the colors;
* the *network* band: shaded wherever some directed links are cut (the
  tooltip lists them, e.g. ``1→2, 2→1``);
* one lane per node: role bars (follower, pre-candidate, candidate, leader,
  down), a thin step line of the commit index (scaled so the run's highest
  index reaches the top of a lane; the final index is written at the right),
  red ``×`` for crashes and blue triangles for restarts;
* the client section: one thin row per client process, each operation a
  segment from invoke to complete colored by outcome;
* the time axis; a violation, if any, is a red vertical line across it all.

Every mark carries a ``<title>`` tooltip; there is no text per operation, so
runs with thousands of operations stay readable.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from xml.sax.saxutils import escape

from raftnet.sim.timeline import Timeline

LEFT, RIGHT = 70, 60  # room for lane labels / final commit indices
NET_Y, NET_H = 48, 12
LANES_Y, LANE_H, LANE_GAP = 68, 26, 6
OP_ROW = 6
ROLE_FILL = {
    "follower": "#d9d9d9",
    "pre-candidate": "#fff3a0",
    "candidate": "#f5a623",
    "leader": "#4caf50",
    "down": "url(#hatch)",
}
OUTCOME_COLOR = {"ok": "#1f6fd6", "fail": "#d62728", "unknown": "#8e44ad"}
_BAD_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def esc(value: object) -> str:
    """Text safe inside an element or a double-quoted attribute."""
    return escape(_BAD_XML.sub("?", str(value)), {'"': "&quot;"})


@dataclass
class _Frame:
    width: int
    end: int
    lane_top: dict[int, int]
    ops_y: int
    axis_y: int

    def x(self, t: int) -> float:
        return LEFT + min(max(t, 0), self.end) * self.width / self.end


def _run_end(tl: Timeline) -> int:
    if tl.end:
        return tl.end
    times = [t for lane in tl.roles.values() for t, _, _ in lane]
    times += [t for lane in tl.commits.values() for t, _ in lane]
    times += [t for t, _, _ in tl.crashes] + [t for t, _ in tl.restarts]
    times += [t for t, _ in tl.network] + [op.invoke for op in tl.ops]
    times += [op.complete for op in tl.ops if op.complete is not None]
    if tl.violation:
        times.append(tl.violation[0])
    return max(times, default=0) or 1


def _intervals(entries: list, end: int):
    """(start, stop, entry) for change lists where each entry holds until the next."""
    for i, entry in enumerate(entries):
        stop = entries[i + 1][0] if i + 1 < len(entries) else end
        yield entry[0], max(stop, entry[0]), entry


def _header(out: list[str], tl: Timeline, fr: _Frame) -> None:
    out.append(f'<text x="{LEFT}" y="18" font-size="14" font-weight="bold">seed {esc(tl.seed)}'
               f" — {len(tl.nodes)} nodes — virtual time 0..{fr.end}</text>")
    items = [(ROLE_FILL[r], r) for r in ROLE_FILL] + [(c, o) for o, c in OUTCOME_COLOR.items()]
    items += [("#e74c3c", "cut links"), ("#222", "commit index")]
    x = LEFT
    for fill, label in items:
        out.append(f'<rect x="{x}" y="27" width="10" height="9" fill="{fill}" stroke="#888" '
                   f'stroke-width="0.5"/><text x="{x + 13}" y="35" font-size="10">{label}</text>')
        x += 24 + 6 * len(label)


def _network(out: list[str], tl: Timeline, fr: _Frame) -> None:
    out.append(f'<text x="4" y="{NET_Y + 10}" font-size="10">network</text>')
    out.append(f'<rect x="{LEFT}" y="{NET_Y}" width="{fr.width}" height="{NET_H}" fill="none" '
               'stroke="#ccc"/>')
    for start, stop, (_, links) in _intervals(tl.network, fr.end):
        if not links:
            continue
        x0, x1 = fr.x(start), fr.x(stop)
        cut = ", ".join(f"{a}→{b}" for a, b in sorted(links))
        out.append(f'<rect class="cut" x="{x0:.1f}" y="{NET_Y}" width="{max(x1 - x0, 0.5):.1f}" '
                   f'height="{NET_H}" fill="#e74c3c" fill-opacity="0.5">'
                   f"<title>cut {start}..{stop}: {esc(cut)}</title></rect>")


def _roles(out: list[str], node: int, entries: list, fr: _Frame) -> None:
    top = fr.lane_top[node]
    for start, stop, (_, role, term) in _intervals(entries, fr.end):
        x0, x1 = fr.x(start), fr.x(stop)
        w = max(x1 - x0, 0.3)
        fill = ROLE_FILL.get(role, "#ffffff")
        out.append(f'<rect class="role {esc(role)}" x="{x0:.1f}" y="{top}" width="{w:.1f}" '
                   f'height="{LANE_H}" fill="{fill}"><title>node {node} {esc(role)} term {term} '
                   f"from {start} to {stop}</title></rect>")
        fits = w >= 6 * len(str(term)) + 4  # leaders: whenever the digits fit
        if (role == "leader" and fits) or (role == "candidate" and fits and w > 30):
            out.append(f'<text x="{x0 + 2:.1f}" y="{top + 10}" font-size="9">{term}</text>')


def _thin(points: list[tuple[int, int]], fr: _Frame) -> list[tuple[int, int]]:
    """At most one point (the highest index) per pixel column, if there are many."""
    if len(points) <= 2 * fr.width:
        return points
    cols: dict[int, tuple[int, int]] = {}
    for t, index in points:
        col = int(fr.x(t))
        if col not in cols or index > cols[col][1]:
            cols[col] = (t, index)
    return list(cols.values())


def _commits(out: list[str], node: int, points: list, top_index: int, fr: _Frame) -> None:
    bottom = fr.lane_top[node] + LANE_H - 2

    def y(index: int) -> float:
        return bottom - index * (LANE_H - 4) / top_index

    prev, xy = 0, [f"{LEFT},{bottom}"]
    for t, index in _thin(points, fr):
        x = fr.x(t)
        xy.append(f"{x:.1f},{y(prev):.1f} {x:.1f},{y(index):.1f}")
        prev = index
    xy.append(f"{LEFT + fr.width},{y(prev):.1f}")
    out.append(f'<polyline class="commit" points="{" ".join(xy)}" fill="none" stroke="#222" '
               'stroke-width="1"/>')
    out.append(f'<text class="final-commit" x="{LEFT + fr.width + 4}" y="{bottom - 6}" '
               f'font-size="10">{prev}<title>node {node} final commit index {prev}</title></text>')


def _marks(out: list[str], tl: Timeline, fr: _Frame) -> None:
    for t, node, where in tl.crashes:
        if node in fr.lane_top:
            x, y = fr.x(t), fr.lane_top[node] + LANE_H / 2
            out.append(f'<path class="crash" d="M{x - 4:.1f},{y - 4:.1f}l8,8m0,-8l-8,8" '
                       f'stroke="#e00" stroke-width="2.5"><title>node {node} crashed at {t}: '
                       f"{esc(where)}</title></path>")
    for t, node in tl.restarts:
        if node in fr.lane_top:
            x, y = fr.x(t), fr.lane_top[node] + LANE_H / 2
            out.append(f'<polygon class="restart" points="{x:.1f},{y - 5:.1f} {x + 7:.1f},{y:.1f} '
                       f'{x:.1f},{y + 5:.1f}" fill="#1565c0"><title>node {node} restarted at {t}'
                       "</title></polygon>")


def _ops(out: list[str], tl: Timeline, fr: _Frame) -> None:
    rows = {p: i for i, p in enumerate(sorted({op.process for op in tl.ops}))}
    out.append(f'<text x="4" y="{fr.ops_y - 4}" font-size="10">clients ({len(rows)})</text>')
    for op in tl.ops:
        y = fr.ops_y + rows[op.process] * OP_ROW + OP_ROW / 2
        stop = fr.end if op.complete is None else op.complete
        x0, x1 = fr.x(op.invoke), fr.x(stop)
        dash = ' stroke-dasharray="3,2"' if op.outcome not in ("ok", "fail") else ""
        color = OUTCOME_COLOR.get(op.outcome, OUTCOME_COLOR["unknown"])
        done = "open" if op.complete is None else op.complete
        out.append(f'<line class="op {esc(op.outcome)}" x1="{x0:.1f}" y1="{y}" '
                   f'x2="{max(x1, x0 + 1):.1f}" y2="{y}" stroke="{color}" '
                   f'stroke-width="{OP_ROW - 2}"{dash}><title>p{op.process} {esc(op.f)} '
                   f"{esc(op.key)} at node {op.node}: {esc(op.outcome)} {op.invoke}..{done}"
                   "</title></line>")


def _axis(out: list[str], fr: _Frame) -> None:
    y = fr.axis_y
    out.append(f'<line x1="{LEFT}" y1="{y}" x2="{LEFT + fr.width}" y2="{y}" stroke="#000"/>')
    raw = fr.end / 10
    mag = 10 ** math.floor(math.log10(raw)) if raw > 0 else 1
    step = max(1, int(next(m * mag for m in (1, 2, 5, 10) if m * mag >= raw)))
    for t in range(0, fr.end + 1, step):
        x = fr.x(t)
        out.append(f'<line x1="{x:.1f}" y1="{y}" x2="{x:.1f}" y2="{y + 4}" stroke="#000"/>'
                   f'<text x="{x:.1f}" y="{y + 15}" font-size="10" '
                   f'text-anchor="middle">{t}</text>')


def _violation(out: list[str], tl: Timeline, fr: _Frame) -> None:
    if tl.violation is None:
        return
    t, what = tl.violation
    x = fr.x(t)
    anchor, dx = ("end", -4) if x > LEFT + fr.width / 2 else ("start", 4)
    out.append(f'<g class="violation"><title>violation at {t}: {esc(what)}</title>'
               f'<line x1="{x:.1f}" y1="{NET_Y - 4}" x2="{x:.1f}" y2="{fr.axis_y}" '
               f'stroke="#e00" stroke-width="2"/><text x="{x + dx:.1f}" y="{NET_Y - 4}" '
               f'font-size="11" fill="#e00" text-anchor="{anchor}">{esc(what)}</text></g>')


def _frame(tl: Timeline, width: int) -> _Frame:
    lane_top = {n: LANES_Y + i * (LANE_H + LANE_GAP) for i, n in enumerate(tl.nodes)}
    ops_y = LANES_Y + len(tl.nodes) * (LANE_H + LANE_GAP) + 16
    processes = len({op.process for op in tl.ops})
    return _Frame(width, _run_end(tl), lane_top, ops_y, ops_y + processes * OP_ROW + 6)


def _svg_element(tl: Timeline, width: int) -> str:
    fr = _frame(tl, width)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{LEFT + width + RIGHT}" '
           f'height="{fr.axis_y + 24}" font-family="sans-serif">',
           '<defs><pattern id="hatch" width="5" height="5" patternUnits="userSpaceOnUse" '
           'patternTransform="rotate(45)"><rect width="5" height="5" fill="#444" '
           'fill-opacity="0.25"/><line x1="0" y1="0" x2="0" y2="5" stroke="#000" '
           'stroke-opacity="0.6" stroke-width="2"/></pattern></defs>',
           '<rect width="100%" height="100%" fill="#fff"/>']
    _header(out, tl, fr)
    _network(out, tl, fr)
    top_index = max((i for pts in tl.commits.values() for _, i in pts), default=0) or 1
    for node in tl.nodes:
        out.append(f'<text x="4" y="{fr.lane_top[node] + LANE_H / 2 + 4}" font-size="12">'
                   f"node {node}</text>")
        _roles(out, node, tl.roles.get(node, []), fr)
        _commits(out, node, tl.commits.get(node, []), top_index, fr)
    _marks(out, tl, fr)
    _ops(out, tl, fr)
    _axis(out, fr)
    _violation(out, tl, fr)
    out.append("</svg>")
    return "\n".join(out)


def render_svg(tl: Timeline, *, width: int = 1600) -> str:
    """A complete standalone SVG document drawing the run."""
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + _svg_element(tl, width) + "\n"


def render_html(tl: Timeline, *, width: int = 1600) -> str:
    """A minimal HTML page with the same SVG inline."""
    return (f'<!DOCTYPE html>\n<html><head><meta charset="utf-8">'
            f"<title>raftnet timeline — seed {esc(tl.seed)}</title></head>\n<body>\n"
            f"{_svg_element(tl, width)}\n</body></html>\n")


def write_timeline(path: str, tl: Timeline, *, width: int = 1600) -> None:
    """Write the drawing as SVG or HTML, chosen by the file's suffix."""
    lower = path.lower()
    if lower.endswith(".svg"):
        text = render_svg(tl, width=width)
    elif lower.endswith((".html", ".htm")):
        text = render_html(tl, width=width)
    else:
        raise ValueError(f"timeline file must end in .svg or .html: {path}")
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)
