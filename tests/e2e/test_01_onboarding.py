"""A new Matrix user finds the bot, logs in to Gitter and gets their rooms."""

from harness import MatrixUser, follow_login_link, http, login_link, scenario


@scenario
async def test_new_user_logs_in_and_gets_a_portal_per_gitter_room(env, people):
    dave = MatrixUser(env, "dave")
    await dave.register()

    # A direct chat with the bot: it joins and greets with a login link.
    await dave.dm_bot()
    greeting = await dave.wait_notice("Hello! I bridge your Gitter rooms to Matrix.")
    link = login_link(greeting)
    assert link.startswith(f"{env.web_url}/login/"), link

    # The link's page names the Matrix account and asks first; a preview's GET spends nothing.
    async with http().get(link, allow_redirects=False) as resp:
        page = await resp.text()
        assert resp.status == 200, resp.status
        assert dave.user_id in page, page[:400]
    # Its button leads through Gitter's sign-in back to the bridge's success page, which
    # names both accounts.
    page = await follow_login_link(env, link, "dave")
    assert "Your Gitter account dave is now linked to the Matrix account" in page, page[:400]
    assert dave.user_id in page

    # The bot confirms, and a portal for dave's one Gitter room (gitter-bridge/dev) arrives.
    await dave.wait_notice("You are now logged in as dave.")
    dev = await dave.join_invite("gitter-bridge/dev")
    assert dave.client.rooms[dev].topic == "Development of the bridge"
    assert dave.client.rooms[dev].room_version == "12"  # Synapse's default, kept on purpose

    # The link was single-use.
    async with http().get(link, allow_redirects=False) as resp:
        assert resp.status >= 400, f"a used login link answered {resp.status}"

    assert await dave.command("whoami", "You are logged in to Gitter as dave.")
    people.adopt("dave", dave, {"gitter-bridge/dev": dev})
