"""Session keys: the exact shapes of the contract, and that distinct origins never share a key."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.session import session_key
from bridge.types import ChatKind, Session

ids = st.text(min_size=1, max_size=12)
MODES = ["qualified", "raw"]
platforms = st.sampled_from(
    ["telegram", "discord", "slack", "console", "tg", "matrix", "a.b", "x:y"]
)


def test_documented_shapes():
    assert session_key("telegram", ChatKind.DM, "42") == "wx:dm:tg.42"
    assert (
        session_key("telegram", ChatKind.GROUP, "42", group="-1001234567890")
        == "wx:group:tg.-1001234567890:user:tg.42"
    )
    assert (
        session_key("slack", ChatKind.GROUP, "U012AB3CD", group="C1", workspace="T024BE7LD")
        == "wx:group:sl.T024BE7LD.C1:user:sl.T024BE7LD.U012AB3CD"
    )
    assert session_key("discord", ChatKind.DM, "80351110224678912") == "wx:dm:dc.80351110224678912"


def test_raw_keys_use_platform_ids_as_they_are():
    assert session_key("telegram", ChatKind.DM, "42", mode="raw") == "wx:dm:42"
    assert session_key("telegram", ChatKind.GROUP, "42", group="-100", mode="raw") == (
        "wx:group:-100:user:42"
    )


@given(
    platforms,
    st.none() | ids,
    st.none() | ids,
    ids,
    platforms,
    st.none() | ids,
    st.none() | ids,
    ids,
)
def test_distinct_origins_never_share_a_key(p1, w1, g1, u1, p2, w2, g2, u2):
    k1 = session_key(p1, ChatKind.GROUP if g1 else ChatKind.DM, u1, g1, w1)
    k2 = session_key(p2, ChatKind.GROUP if g2 else ChatKind.DM, u2, g2, w2)
    same_origin = (p1, w1, g1, u1) == (p2, w2, g2, u2)
    assert (k1 == k2) == same_origin


@given(platforms, st.none() | ids, st.none() | ids, ids)
def test_keys_parse_one_way(platform, workspace, group, user):
    key = session_key(platform, ChatKind.GROUP if group else ChatKind.DM, user, group, workspace)
    parts = key.split(":")
    if group:
        assert len(parts) == 5 and parts[:2] == ["wx", "group"] and parts[3] == "user"
    else:
        assert len(parts) == 3 and parts[:2] == ["wx", "dm"]


@given(ids, ids, st.integers(0, 3), st.integers(0, 3), st.booleans(), st.sampled_from(MODES))
def test_a_reset_never_makes_one_persons_id_anothers(u1, other, gen1, gen2, lookalike, mode):
    """`/reset` sends `key#n`; no other key may ever equal it (user `a:b` after one reset and a
    new user `a:b#2` used to share the server's history)."""
    u2 = f"{u1}#{gen1 + 1}" if lookalike else other  # named like u1's next session
    wire = [
        Session(session_key("console", ChatKind.DM, user, mode=mode), {"generation": gen}).wire_id
        for user, gen in ((u1, gen1), (u2, gen2))
    ]
    assert (wire[0] == wire[1]) == ((u1, gen1) == (u2, gen2))


def test_hash_is_escaped_in_keys():
    assert session_key("console", ChatKind.DM, "a:b#2") == "wx:dm:cl.a%3Ab%232"
    assert session_key("telegram", ChatKind.DM, "a#2", mode="raw") == "wx:dm:a%232"
