"""The timeline drawing: well-formed SVG/HTML with one mark per recorded event."""

from __future__ import annotations

import random
import xml.etree.ElementTree as ET

import pytest

from raftnet.sim.timeline import ClientOp, Timeline
from raftnet.sim.timeline_svg import render_html, render_svg, write_timeline

NS = "{http://www.w3.org/2000/svg}"


def small_timeline() -> Timeline:
    tl = Timeline(seed=42, nodes=[1, 2, 3], end=300)
    for node in tl.nodes:
        tl.role(0, node, "follower", 0)
    tl.role(50, 1, "pre-candidate", 0)
    tl.role(60, 1, "candidate", 1)
    tl.role(70, 1, "leader", 1)
    tl.crash(150, 1, "before applying <3> & more")
    tl.restart(180, 1)
    tl.role(180, 1, "follower", 1)
    tl.role(160, 2, "candidate", 2)
    tl.role(170, 2, "leader", 2)
    for t, index in [(80, 1), (100, 2), (120, 3)]:
        for node in tl.nodes:
            tl.commit(t + node, node, index)
    tl.commit(200, 2, 4)
    tl.cut(140, {(1, 2), (2, 1)})
    tl.cut(190, set())
    tl.ops = [
        ClientOp(1, 1, "put", "k1", 75, 90, "ok"),
        ClientOp(2, 1, "get", "k<&>", 95, 130, "fail"),
        ClientOp(3, 1, "cas", "k2", 140, None, "unknown"),
        ClientOp(1, 2, "delete", "k1", 200, 220, "ok"),
    ]
    tl.violation = (250, 'linearizability: read "x" <stale> & lost')
    return tl


def parse(svg: str) -> ET.Element:
    return ET.fromstring(svg.encode("utf-8"))


def with_class(root: ET.Element, cls: str) -> list[ET.Element]:
    return [el for el in root.iter() if cls in el.get("class", "").split()]


def title(el: ET.Element) -> str:
    t = el.find(f"{NS}title")
    assert t is not None, ET.tostring(el)
    return t.text or ""


def all_text(root: ET.Element) -> str:
    return "\n".join("".join(el.itertext()) for el in root.iter(f"{NS}text"))


def test_one_bar_per_role_interval_with_tooltips():
    tl = small_timeline()
    root = parse(render_svg(tl))
    assert root.tag == f"{NS}svg"
    leaders = with_class(root, "leader")
    n_leader = sum(r == "leader" for lane in tl.roles.values() for _, r, _ in lane)
    assert len(leaders) == n_leader == 2
    assert {title(el) for el in leaders} == {
        "node 1 leader term 1 from 70 to 150",
        "node 2 leader term 2 from 170 to 300",
    }
    assert len(with_class(root, "role")) == sum(len(lane) for lane in tl.roles.values())
    assert len(with_class(root, "down")) == 1


def test_crash_restart_partition_and_violation_are_marked():
    root = parse(render_svg(small_timeline()))
    [crash] = with_class(root, "crash")
    assert "before applying <3> & more" in title(crash)
    assert len(with_class(root, "restart")) == 1
    [cut] = with_class(root, "cut")  # the healed interval is not shaded
    assert title(cut) == "cut 140..190: 1→2, 2→1"
    [violation] = with_class(root, "violation")
    assert 'linearizability: read "x" <stale> & lost' in title(violation)
    assert 'read "x" <stale> & lost' in all_text(root)


def test_each_op_has_a_tooltip_with_its_process_and_outcome():
    tl = small_timeline()
    root = parse(render_svg(tl))
    ops = with_class(root, "op")
    assert len(ops) == len(tl.ops)
    for el, op in zip(ops, tl.ops, strict=True):
        text = title(el)
        assert text.startswith(f"p{op.process} {op.f} {op.key} at node {op.node}: {op.outcome}")
        assert op.outcome in el.get("class", "")
    assert title(ops[0]) == "p1 put k1 at node 1: ok 75..90"
    assert title(ops[1]) == "p2 get k<&> at node 1: fail 95..130"  # escaped, round-trips
    assert title(ops[2]).endswith("140..open")


def test_commit_lines_and_header():
    tl = small_timeline()
    root = parse(render_svg(tl))
    assert len(with_class(root, "commit")) == 3
    finals = [t.text for t in with_class(root, "final-commit")]
    assert finals == ["3", "4", "3"]
    text = all_text(root)
    assert "seed 42 — 3 nodes — virtual time 0..300" in text
    for label in ("node 1", "node 2", "node 3", "leader", "candidate", "unknown"):
        assert label in text


def test_width_is_configurable():
    narrow = parse(render_svg(small_timeline(), width=400))
    wide = parse(render_svg(small_timeline()))
    assert float(narrow.get("width")) < float(wide.get("width"))


def test_many_commit_points_are_thinned():
    tl = Timeline(seed=1, nodes=[1], end=20_000)
    for t in range(20_000):
        tl.commit(t, 1, t + 1)
    root = parse(render_svg(tl, width=500))
    [line] = with_class(root, "commit")
    assert len(line.get("points").split()) < 2 * 2 * 500 + 4
    assert [t.text for t in with_class(root, "final-commit")] == ["20000"]


def test_a_big_run_renders():
    rng = random.Random(7)
    tl = Timeline(seed=9, nodes=[1, 2, 3, 4, 5], end=100_000)
    roles = ["follower", "pre-candidate", "candidate", "leader", "down"]
    for i in range(2_000):
        tl.role(i * 50, rng.choice(tl.nodes), rng.choice(roles), i // 10)
    for t in range(20_000):
        tl.commit(t * 5, tl.nodes[t % 5], t // 5)
    for i in range(5_000):
        invoke = i * 20
        done = None if i % 97 == 0 else invoke + rng.randint(1, 200)
        tl.ops.append(ClientOp(i % 10, 1, "put", f"k{i}", invoke, done,
                               rng.choice(["ok", "fail", "unknown"])))
    root = parse(render_svg(tl))
    assert len(with_class(root, "op")) == 5_000


def test_empty_timeline_renders():
    tl = Timeline(seed=0, nodes=[])
    root = parse(render_svg(tl))
    assert "seed 0" in all_text(root)
    parse(render_svg(Timeline(seed=3, nodes=[1, 2])))


def test_end_defaults_to_the_last_time_seen():
    tl = small_timeline()
    tl.end = 0
    assert "virtual time 0..250" in all_text(parse(render_svg(tl)))


def test_write_timeline_picks_the_format_by_suffix(tmp_path):
    tl = small_timeline()
    svg = tmp_path / "run.svg"
    write_timeline(str(svg), tl)
    assert parse(svg.read_text(encoding="utf-8")).tag == f"{NS}svg"

    for name in ("run.html", "run.htm"):
        page = tmp_path / name
        write_timeline(str(page), tl)
        text = page.read_text(encoding="utf-8")
        assert "<title>raftnet timeline — seed 42</title>" in text
        svg_part = text[text.index("<svg"):text.index("</svg>") + len("</svg>")]
        assert len(with_class(parse(svg_part), "leader")) == 2

    with pytest.raises(ValueError, match="must end in .svg or .html"):
        write_timeline(str(tmp_path / "run.png"), tl)
    assert not (tmp_path / "run.png").exists()


def test_html_matches_svg():
    tl = small_timeline()
    assert render_svg(tl).split("\n", 1)[1].strip() in render_html(tl)
