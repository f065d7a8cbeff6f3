"""Messages both ways between a Gitter room and a user's portal."""

from harness import eventually, scenario, unique

LOBBY = "gitter-bridge/lobby"


@scenario
async def test_gitter_messages_arrive_from_ghosts(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)
    bob = env.ghost("bob")

    # Bob writes on Gitter: carol sees it from bob's ghost, with Gitter's HTML as formatted body.
    tag = unique("m")
    posted = await gitter.post(LOBBY, "bob", f"Hello from `Gitter` & <friends> {tag}")
    assert posted["html"] == f"Hello from <code>Gitter</code> &amp; &lt;friends&gt; {tag}"
    event = await carol.wait_body(lobby, bob, posted["text"])
    assert event["content"]["msgtype"] == "m.text"
    assert event["content"]["format"] == "org.matrix.custom.html"
    assert event["content"]["formatted_body"] == posted["html"]
    await eventually(
        lambda: carol.display_name(lobby, bob) == "Bob Builder (Gitter)",
        "bob's ghost to be shown as 'Bob Builder (Gitter)'",
    )

    # A /me status message becomes an emote.
    action = unique("waves")
    await gitter.post(LOBBY, "bob", action, status=True)
    emote = await carol.wait_message(
        lobby, bob, lambda e: action in e["content"].get("body", ""), "bob's /me"
    )
    assert emote["content"]["msgtype"] == "m.emote"


@scenario
async def test_matrix_messages_reach_gitter_once_and_do_not_echo(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)

    # Carol writes in her portal: Gitter shows it once, from her Gitter account.
    text = unique("hello from Matrix")
    await carol.send(lobby, text)
    await gitter.wait_message(LOBBY, "carol", text)

    # Bob's next message proves the stream went past carol's: no echo came back.
    marker = unique("marker")
    await gitter.post(LOBBY, "bob", marker)
    await carol.wait_body(lobby, env.ghost("bob"), marker)
    assert carol.bodies(lobby).count(text) == 1
    # (Her ghost may have spoken before: the lobby's history, which she wrote on Gitter.)
    assert text not in carol.bodies(lobby, env.ghost("carol"))
    assert [m["text"] for m in await gitter.messages(LOBBY)].count(text) == 1

    # What carol writes from another Gitter client does show up, as her ghost.
    elsewhere = unique("sent from the Gitter app")
    await gitter.post(LOBBY, "carol", elsewhere)
    await carol.wait_body(lobby, env.ghost("carol"), elsewhere)
