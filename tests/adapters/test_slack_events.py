"""Slack event payloads → Inbound, and Markdown → mrkdwn: the rules, without a network."""

from __future__ import annotations

from adapters._slack_events import to_inbound
from adapters._slack_format import to_mrkdwn
from bridge.session import key_for
from bridge.types import Addressed, ChatKind
from tests.fakes.slack_api import BOT_USER_ID, channel_message, im, mention


def inbound(body, **kwargs):
    return to_inbound(body, bot_user_id=BOT_USER_ID, **kwargs)


def test_im_is_a_dm_without_thread():
    body = im("hi <@UBOT>", thread_ts="1700000000.000001")
    got = inbound(body)
    assert (got.kind, got.addressed, got.text) == (ChatKind.DM, Addressed.DM, "hi")
    assert got.thread_id is None and got.scope_id is None
    assert (got.workspace, got.chat_id, got.sender_id) == ("T024", "D0IM", "U012")
    assert got.event_id == body["event_id"] and got.message_id == body["event"]["ts"]
    assert key_for(got) == "wx:dm:sl.T024.U012"


def test_mention_in_a_private_channel_is_a_group_message_in_its_thread():
    body = mention("<@UBOT|bridge>   explain", channel="G0PRIV", thread_ts="1700000000.000009")
    got = inbound(body)
    assert (got.kind, got.addressed, got.text) == (ChatKind.GROUP, Addressed.MENTION, "explain")
    assert got.thread_id == "1700000000.000009"
    assert key_for(got) == "wx:group:sl.T024.G0PRIV:user:sl.T024.U012"


def test_missing_event_id_falls_back_to_channel_and_ts():
    body = mention("<@UBOT> hi")
    del body["event_id"]
    assert inbound(body).event_id == f"C123.{body['event']['ts']}"


def test_thread_scope_only_when_asked():
    body = mention("<@UBOT> hi", thread_ts="1700000000.000001")
    assert inbound(body).scope_id is None
    assert inbound(body, threads_as_groups=True).scope_id == "C123/1700000000.000001"


def test_what_is_not_counted_and_what_is_ignored():
    assert inbound(channel_message("<@UBOT> hi")) is None  # answered through app_mention
    assert inbound(mention("<@UBOT> hi", channel="D0IM")) is None  # answered through message
    assert inbound(im("edited", subtype="message_changed")) is None
    assert inbound(im("from a bot", bot_id="B1")) is None
    assert inbound(im("mine", user=BOT_USER_ID)) is None
    assert inbound(channel_message("chatter")).addressed is Addressed.NOT


def test_slack_entities_are_undone_other_mentions_kept():
    got = inbound(im("ask <@U999> about a &lt; b &amp;&amp; c &gt; d"))
    assert got.text == "ask <@U999> about a < b && c > d"


def test_mrkdwn_bold_links_lists_and_escaped_code():
    text = to_mrkdwn("**bold** [docs](https://x.io) & more\n\n- one\n\n```\nif a < b: <div>\n```")
    assert text.startswith("*bold* <https://x.io|docs> &amp; more")
    assert "•" in text
    assert "if a &lt; b: &lt;div&gt;" in text
    assert to_mrkdwn("use `a<b>` here") == "use `a&lt;b&gt;` here"
