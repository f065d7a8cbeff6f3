"""Two Matrix users logged in as two Gitter users of the same Gitter room."""

from harness import eventually, scenario, unique

LOBBY = "gitter-bridge/lobby"


@scenario
async def test_each_has_a_portal_and_sees_the_other_as_a_ghost(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    alice = await people.logged_in("alice", [LOBBY])
    carols = await people.portal("carol", LOBBY)
    alices = await people.portal("alice", LOBBY)
    assert carols != alices
    # Private portals: neither Matrix user is in the other's room.
    assert alice.user_id not in carol.client.rooms[carols].users
    assert carol.user_id not in alice.client.rooms[alices].users

    hello = unique("hi alice")
    await carol.send(carols, hello)
    await alice.wait_body(alices, env.ghost("carol"), hello)

    reply = unique("hi carol")
    await alice.send(alices, reply)
    await carol.wait_body(carols, env.ghost("alice"), reply)

    await eventually(
        lambda: alice.display_name(alices, env.ghost("carol")) == "Carol Danvers (Gitter)",
        "carol's ghost to be shown as 'Carol Danvers (Gitter)' to alice",
    )
    await eventually(
        lambda: carol.display_name(carols, env.ghost("alice")) == "Alice Liddell (Gitter)",
        "alice's ghost to be shown as 'Alice Liddell (Gitter)' to carol",
    )

    # Once each, no echo (bob's later message proves both streams went past them).
    marker = unique("marker")
    await gitter.post(LOBBY, "bob", marker)
    await carol.wait_body(carols, env.ghost("bob"), marker)
    await alice.wait_body(alices, env.ghost("bob"), marker)
    assert carol.bodies(carols).count(hello) == 1
    assert carol.bodies(carols).count(reply) == 1
    assert alice.bodies(alices).count(hello) == 1
    assert alice.bodies(alices).count(reply) == 1
