"""The bot's commands: list, join, leave, invite, usage lines and logout."""

from harness import scenario, unique

DEV = "gitter-bridge/dev"
LOBBY = "gitter-bridge/lobby"


def listed(notice: str) -> list[str]:
    """The room lines of a `list` answer, e.g. ['★ gitter-bridge/dev'] for the markdown
    line "- ★ `gitter-bridge/dev`" (★: its Matrix room is joined)."""
    return [
        line.removeprefix("- ").replace("`", "")
        for line in notice.splitlines()[1:]
        if line.strip()
    ]


@scenario
async def test_list_join_leave_invite_and_logout(env, people, gitter):
    dave = await people.logged_in("dave", [DEV])
    dev = await people.portal("dave", DEV)

    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [f"★ {DEV}"]

    # join: dave joins the lobby on Gitter and gets its portal, where he can write.
    await dave.command(f"join {LOBBY}", f"Joined {LOBBY} on Gitter.")
    lobby = await dave.join_invite(LOBBY)
    hello = unique("dave says hi")
    await dave.send(lobby, hello)
    await gitter.wait_message(LOBBY, "dave", hello)
    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [f"★ {DEV}", f"★ {LOBBY}"]

    # leave: off the Gitter room, and the bot removes him from the portal.
    await dave.command(f"gpart {LOBBY}", f"Left {LOBBY} on Gitter.")
    await dave.wait_left(lobby)
    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [f"★ {DEV}"]

    # invite: leaving the Matrix room keeps the Gitter membership; `invite` brings it back.
    await dave.leave(dev)
    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [DEV]
    await dave.command(f"invite {DEV}", f"Invited you to the room of {DEV}.")
    assert await dave.wait_invite(DEV) == dev
    # Invited is not joined: no star until dave takes the invitation.
    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [DEV]
    await dave.accept(dev)
    rooms = await dave.command("list", "Your Gitter rooms")
    assert listed(rooms) == [f"★ {DEV}"]

    # Wrong arguments get a usage line, unknown words a pointer to help.
    await dave.command("join", "Usage: `join <room>`")
    await dave.command("dance", "Unknown command `dance`. Send `help`")

    # Notices are markdown rendered to HTML: help is a list, commands are code, nobody pinged.
    await dave.command("help", "Commands:")
    help_content = [
        e["content"]
        for e in dave.messages(dave.control_room, env.bot)
        if e["content"].get("body", "").startswith("Commands:")
    ][-1]
    assert help_content["format"] == "org.matrix.custom.html", help_content
    assert "<li><code>whoami</code>: " in help_content["formatted_body"], help_content
    assert help_content["m.mentions"] == {}, help_content

    # logout: the token is forgotten and dave is removed from every portal.
    await dave.command("logout", "You are logged out")
    await dave.wait_left(dev)
    await dave.command("whoami", "You are not logged in to Gitter.")
    await dave.command("list", "You need to log in to Gitter first")
    people.forget("dave")
