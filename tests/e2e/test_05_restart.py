"""The bridge restarts while both sides keep talking: every message arrives exactly once."""

import asyncio

from harness import scenario, unique

LOBBY = "gitter-bridge/lobby"
PER_SENDER = 8
# Synapse retries transactions to an application service that was down after 2, 4, 8 ... s.
AFTER_RESTART_TIMEOUT = 60


@scenario
async def test_restart_loses_and_duplicates_nothing(env, people, gitter, bridge):
    carol = await people.logged_in("carol", [LOBBY])
    alice = await people.logged_in("alice", [LOBBY])
    carols = await people.portal("carol", LOBBY)
    alices = await people.portal("alice", LOBBY)
    run = unique("restart")
    texts = {who: [f"{run} {who} {i}" for i in range(PER_SENDER)] for who in ("bob", "carol", "alice")}

    async def bob_on_gitter():
        for text in texts["bob"]:
            await gitter.post(LOBBY, "bob", text)
            await asyncio.sleep(0.5)

    async def on_matrix(user, room, who):
        for text in texts[who]:
            await user.send(room, text)
            await asyncio.sleep(0.5)

    async def restart():
        await asyncio.sleep(1.0)
        await bridge.stop()
        await asyncio.sleep(1.0)
        await bridge.start()

    await asyncio.gather(
        bob_on_gitter(),
        on_matrix(carol, carols, "carol"),
        on_matrix(alice, alices, "alice"),
        restart(),
    )

    # Everything arrives: Matrix -> Gitter under each user's own Gitter account ...
    await gitter.wait_all(
        LOBBY,
        [(who, text) for who in ("carol", "alice") for text in texts[who]],
        AFTER_RESTART_TIMEOUT,
    )
    # ... and Gitter -> Matrix into both portals, from the authors' ghosts.
    for user, room, others in ((carol, carols, ("bob", "alice")), (alice, alices, ("bob", "carol"))):
        expected = [(env.ghost(who), text) for who in others for text in texts[who]]
        await user.wait_all(room, expected, AFTER_RESTART_TIMEOUT)

    # Settle: a last message each way, then count.
    marker = unique("after the restart")
    await gitter.post(LOBBY, "bob", marker)
    await carol.wait_body(carols, env.ghost("bob"), marker)
    await alice.wait_body(alices, env.ghost("bob"), marker)
    on_gitter = [m["text"] for m in await gitter.messages(LOBBY)]
    for who in ("carol", "alice"):
        for text in texts[who]:
            assert on_gitter.count(text) == 1, f"{text!r} is {on_gitter.count(text)} times on Gitter"
    for user, room in ((carol, carols), (alice, alices)):
        bodies = user.bodies(room)
        for text in texts["bob"] + texts["carol"] + texts["alice"]:
            assert bodies.count(text) == 1, f"{text!r} is {bodies.count(text)} times in {user}'s portal"
