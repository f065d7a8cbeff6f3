"""Gitter's realtime API, read through the protocol's own server (Faye, from npm, started by
the e2e script; the fake Gitter publishes into it): what happens on Gitter besides new
messages reaches a real Matrix client. An edit becomes an `m.replace`, a deletion a
redaction, a new topic `m.room.topic`, people joining and leaving on Gitter come and go as
ghosts, and a room joined in another Gitter client gets its portal."""

import os

import pytest

from harness import scenario, unique

pytestmark = pytest.mark.skipif(
    os.environ.get("E2E_FAYE") != "1",
    reason="no Node.js for the Faye server: the bridge reads HTTP streams (scripts/e2e-synapse.sh)",
)

LOBBY = "gitter-bridge/lobby"
SANDBOX = "gitter-bridge/sandbox"


@scenario
async def test_an_edit_and_a_deletion_on_gitter_reach_the_portal(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)
    bob = env.ghost("bob")

    typo = unique("helo from gitter")
    posted = await gitter.post(LOBBY, "bob", typo)
    original = await carol.wait_body(lobby, bob, typo)
    fixed = typo.replace("helo", "hello")
    await gitter.act("edit", room=LOBBY, username="bob", id=posted["id"], text=fixed)
    edit = await carol.wait_message(
        lobby,
        bob,
        lambda e: e["content"].get("m.new_content", {}).get("body") == fixed,
        "the edit",
    )
    relation = edit["content"]["m.relates_to"]
    assert relation == {"rel_type": "m.replace", "event_id": original["event_id"]}, relation

    gone = unique("a message bob regrets")
    posted = await gitter.post(LOBBY, "bob", gone)
    regretted = await carol.wait_body(lobby, bob, gone)
    await gitter.act("delete", room=LOBBY, username="bob", id=posted["id"])
    await carol.wait_event(
        lobby,
        "m.room.redaction",
        lambda e: e.get("redacts") == regretted["event_id"]
        or e["content"].get("redacts") == regretted["event_id"],
        "the redaction of bob's message",
    )


@scenario
async def test_a_new_topic_and_people_coming_and_going_reach_the_portal(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)

    topic = unique("Realtime is here")
    await gitter.act("room_details", room=LOBBY, topic=topic)
    await carol.wait_event(
        lobby, "m.room.topic", lambda e: e["content"].get("topic") == topic, "the new topic"
    )

    dave = env.ghost("dave")

    def membership_of(ghost: str, membership: str):
        return lambda e: e.get("state_key") == ghost and e["content"].get("membership") == membership

    await gitter.act("join", room=LOBBY, username="dave")
    await carol.wait_event(lobby, "m.room.member", membership_of(dave, "join"), "dave's ghost joining")
    await gitter.act("leave", room=LOBBY, username="dave")
    await carol.wait_event(lobby, "m.room.member", membership_of(dave, "leave"), "dave's ghost leaving")


@scenario
async def test_a_room_joined_in_another_gitter_client_gets_a_portal(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    since = len(carol.notices())
    await gitter.act("join", room=SANDBOX, username="carol")
    await carol.wait_notice(f"You joined {SANDBOX} on Gitter", since)
    sandbox = await carol.join_invite(SANDBOX)
    text = unique("bob in the sandbox")
    await gitter.post(SANDBOX, "bob", text)
    await carol.wait_body(sandbox, env.ghost("bob"), text)

    since = len(carol.notices())
    await gitter.act("leave", room=SANDBOX, username="carol")
    await carol.wait_notice(f"You left {SANDBOX} on Gitter", since)
    await carol.wait_left(sandbox)
