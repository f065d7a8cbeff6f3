"""Media, avatars and history (issue 17), against the real Synapse: a new portal starts with
its room's past at the times Gitter gave, and so does a message caught up after a restart; a
Matrix image reaches Gitter as a signed link that serves its bytes to anyone holding it, and
only to them; a Gitter image arrives as an m.image with its bytes; ghosts wear their avatars."""

from datetime import datetime
from urllib.parse import quote

from nio import RoomSendResponse

from harness import MatrixUser, eventually, http, log_in, scenario, unique

DEV = "gitter-bridge/dev"


def gitter_ms(sent: str) -> int:
    """Gitter's `sent` (JS toISOString) in ms since the epoch."""
    return round(datetime.fromisoformat(sent.replace("Z", "+00:00")).timestamp() * 1000)


async def room_history(user: MatrixUser, room_id: str) -> list[dict]:
    """The room's m.room.message events, oldest first, read with /messages (not the sync,
    whose timeline a homeserver may cut)."""
    url = (
        f"{user.env.hs_url}/_matrix/client/v3/rooms/{quote(room_id, safe='')}/messages"
        "?dir=b&limit=100"
    )
    headers = {"Authorization": f"Bearer {user.client.access_token}"}
    async with http().get(url, headers=headers) as resp:
        assert resp.status == 200, f"/messages answered {resp.status}"
        chunk = (await resp.json())["chunk"]
    return [e for e in reversed(chunk) if e["type"] == "m.room.message"]


@scenario
async def test_a_new_portal_starts_with_its_history_and_a_file_goes_as_a_signed_link(
    env, gitter
):
    # Alice writes in dev before dave has a portal of it.
    first, second = unique("history one"), unique("history two")
    posted = [await gitter.post(DEV, "alice", text) for text in (first, second)]

    # Dave logs in from a new Matrix account: his dev portal starts with those messages, in
    # order, each at the time Gitter gave it.
    dave = MatrixUser(env, "history")
    await dave.register()
    await log_in(env, dave, "dave")
    dev = await dave.join_invite(DEV)
    alice = env.ghost("alice")
    await dave.wait_body(dev, alice, second)
    history = [e for e in await room_history(dave, dev) if e["sender"] == alice]
    bodies = [e["content"]["body"] for e in history]
    assert bodies.index(first) < bodies.index(second), bodies
    for message in posted:
        event = next(e for e in history if e["content"]["body"] == message["text"])
        assert event["origin_server_ts"] == gitter_ms(message["sent"]), (event, message)

    # Dave sends an image from Matrix: Gitter gets it as a link to the bridge's media page.
    png = bytes(range(256)) * 64
    upload = f"{env.hs_url}/_matrix/media/v3/upload?filename=cat.png"
    headers = {
        "Authorization": f"Bearer {dave.client.access_token}",
        "Content-Type": "image/png",
    }
    async with http().post(upload, data=png, headers=headers) as resp:
        assert resp.status == 200, f"upload answered {resp.status}"
        mxc = (await resp.json())["content_uri"]
    resp = await dave.client.room_send(
        dev,
        "m.room.message",
        {
            "msgtype": "m.image",
            "body": "cat.png",
            "url": mxc,
            "info": {"mimetype": "image/png", "size": len(png)},
        },
    )
    assert isinstance(resp, RoomSendResponse), f"sending the image: {resp}"

    async def link() -> str | None:
        for m in await gitter.messages(DEV):
            if m["fromUser"]["username"] == "dave" and m["text"].startswith("![cat.png]("):
                return m["text"][len("![cat.png](") : -1]
        return None

    url = await eventually(link, "the image's link on Gitter")
    assert url.startswith(f"{env.web_url}/media/"), url

    # Anyone with the link gets the file's bytes, with no Matrix token.
    async with http().get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "image/png"
        assert resp.headers["X-Content-Type-Options"] == "nosniff"
        assert await resp.read() == png

    # A tampered signature is refused.
    prefix, rest = url.split("/media/", 1)
    tampered = f"{prefix}/media/{'0' if rest[0] != '0' else '1'}{rest[1:]}"
    async with http().get(tampered) as resp:
        assert resp.status == 403
        assert await resp.text() == "This link is not valid."


@scenario
async def test_a_gitter_image_arrives_as_an_m_image_with_the_same_bytes(env, people, gitter):
    carol = await people.logged_in("carol", ["gitter-bridge/lobby"])
    lobby = await people.portal("carol", "gitter-bridge/lobby")
    name = f"{unique('cat')}.png"
    url = f"{env.gitter_url}/_sim/gitter/files/{name}"
    async with http().get(url) as resp:
        assert resp.status == 200
        on_gitter = await resp.read()
    await gitter.post("gitter-bridge/lobby", "bob", f"look ![{name}]({url})")

    image = await carol.wait_message(
        lobby,
        env.ghost("bob"),
        lambda e: e["content"].get("msgtype") == "m.image" and e["content"]["body"] == name,
        "bob's image",
    )
    server, media_id = image["content"]["url"].removeprefix("mxc://").split("/", 1)
    download = f"{env.hs_url}/_matrix/client/v1/media/download/{server}/{media_id}"
    headers = {"Authorization": f"Bearer {carol.client.access_token}"}
    async with http().get(download, headers=headers) as resp:
        assert resp.status == 200, f"download answered {resp.status}"
        assert await resp.read() == on_gitter
    assert image["content"]["info"]["size"] == len(on_gitter)


@scenario
async def test_a_ghost_has_its_gitter_avatar(env, people, gitter):
    carol = await people.logged_in("carol", ["gitter-bridge/lobby"])
    lobby = await people.portal("carol", "gitter-bridge/lobby")
    marker = unique("avatar")
    await gitter.post("gitter-bridge/lobby", "bob", marker)
    await carol.wait_body(lobby, env.ghost("bob"), marker)
    async with http().get(f"{env.gitter_url}/_sim/gitter/files/avatar-bob.png") as resp:
        on_gitter = await resp.read()
    headers = {"Authorization": f"Bearer {carol.client.access_token}"}
    profile = f"{env.hs_url}/_matrix/client/v3/profile/{quote(env.ghost('bob'), safe='')}"

    async def avatar() -> str | None:
        async with http().get(profile, headers=headers) as resp:
            return (await resp.json()).get("avatar_url") if resp.status == 200 else None

    mxc = await eventually(avatar, "bob's ghost's avatar")
    server, media_id = mxc.removeprefix("mxc://").split("/", 1)
    download = f"{env.hs_url}/_matrix/client/v1/media/download/{server}/{media_id}"
    async with http().get(download, headers=headers) as resp:
        assert resp.status == 200
        assert await resp.read() == on_gitter



@scenario
async def test_a_message_caught_up_after_a_restart_shows_its_gitter_time(env, gitter, bridge):
    # A Matrix account of its own, logged in as Gitter's dave, reading dev (the suite's
    # earlier tests leave the lobby's readers in states of their own).
    dave = MatrixUser(env, "caught-up")
    await dave.register()
    await log_in(env, dave, "dave")
    dev = await dave.join_invite(DEV)
    ready = unique("before the restart")
    await gitter.post(DEV, "alice", ready)
    await dave.wait_body(dev, env.ghost("alice"), ready)
    await bridge.stop()
    text = unique("while the bridge was down")
    posted = await gitter.post(DEV, "alice", text)
    # The start takes a while (a process, its checks): the message comes older than it was.
    await bridge.start()
    event = await dave.wait_body(dev, env.ghost("alice"), text)
    assert event["origin_server_ts"] == gitter_ms(posted["sent"]), (event, posted)
