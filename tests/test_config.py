"""cluster.toml validation: one precise line per mistake; the writer round-trips."""

from __future__ import annotations

import pytest

from raftnet.config import ConfigError, load_config, parse_config, render_config

GOOD = """
[cluster]
name = "prod"

[[nodes]]
id = 1
address = "127.0.0.1:7001"
[[nodes]]
id = 2
address = "127.0.0.1:7002"

[storage]
data_dir = "data/node-{id}"
"""


def test_good_config_and_derived_ticks(tmp_path):
    path = tmp_path / "cluster.toml"
    path.write_text(GOOD)
    c = load_config(path)
    assert c.name == "prod" and [n.id for n in c.nodes] == [1, 2]
    assert c.data_dir(2) == str(tmp_path / "data" / "node-2")
    rc = c.raft_config(1)
    assert (rc.election_tick, rc.election_tick_max, rc.heartbeat_tick) == (100, 200, 10)
    assert rc.voters == (1, 2)


def test_render_round_trips(tmp_path):
    c = parse_config(GOOD.replace('name = "prod"', 'name = "prod"\nsecret = "x\\"y"'))
    text = render_config(c)
    again = parse_config(text)
    assert again == c


@pytest.mark.parametrize(
    "change, message",
    [
        (lambda t: t.replace("[cluster]\n", "[cluster]\nnmae = 1\n"), "unknown key 'nmae' (did you mean 'name'?)"),
        (lambda t: t.replace('name = "prod"', ""), "[cluster]: missing key 'name'"),
        (lambda t: t.replace("id = 2", "id = 1"), "duplicate node id 1"),
        (lambda t: t.replace("7002", "7001"), "duplicate address 127.0.0.1:7001"),
        (lambda t: t.replace("127.0.0.1:7002", "127.0.0.1:99999"), "port '99999' is not in 1..65535"),
        (lambda t: t.replace("127.0.0.1:7002", "nohost"), "expected host:port"),
        (lambda t: t.replace("id = 2", "id = 0"), "must be >= 1"),
        (lambda t: t.replace("id = 2", 'id = "two"'), "expected an integer"),
        (lambda t: t + '\n[timing]\nelection_timeout_ms = [500, 400]\n', "low (500) must be below high (400)"),
        (lambda t: t + '\n[timing]\nheartbeat_ms = 200\nelection_timeout_ms = [500, 900]\n', "at least 3 heartbeats"),
        (lambda t: t.replace('data_dir = "data/node-{id}"', 'data_dir = "data"'), "must contain {id}"),
        (lambda t: t.replace('data_dir = "data/node-{id}"', 'fsync = "sometimes"'), "storage.fsync"),
        (lambda t: t + "\n[bogus]\nx = 1\n", "unknown key 'bogus'"),
        (lambda t: t + "\n[limits]\nmax_frame_bytes = 10\n", "limits.max_frame_bytes"),
        (lambda t: "not = [toml", "not valid TOML"),
    ],
)
def test_each_mistake_has_a_precise_message(change, message):
    with pytest.raises(ConfigError) as info:
        parse_config(change(GOOD), source="cluster.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("cluster.toml")
    assert "\n" not in str(info.value)


def test_unknown_node_id():
    c = parse_config(GOOD)
    with pytest.raises(ConfigError, match="node id 9 is not in the cluster"):
        c.node(9)
