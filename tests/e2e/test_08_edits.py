"""Edits and redactions of the owner's messages reach Gitter: a real client's `m.replace`
edits the Gitter message, and its redaction deletes it."""

import asyncio
import time

from harness import TIMEOUT, scenario, unique

LOBBY = "gitter-bridge/lobby"


async def carols_texts(gitter) -> list[str]:
    return [
        m["text"] for m in await gitter.messages(LOBBY) if m["fromUser"]["username"] == "carol"
    ]


async def until(gitter, holds, what: str) -> list[str]:
    """Poll carol's Gitter texts until `holds(texts)`; fail with `what` after TIMEOUT s."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        texts = await carols_texts(gitter)
        if holds(texts):
            return texts
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out waiting for {what}; carol's texts: {texts}")
        await asyncio.sleep(0.1)


@scenario
async def test_an_edit_and_a_redaction_from_a_real_client_reach_gitter(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)

    typo = unique("helo from nio")
    event_id = await carol.send(lobby, typo)
    await gitter.wait_message(LOBBY, "carol", typo)

    fixed = typo.replace("helo", "hello")
    await carol.edit(lobby, event_id, fixed)
    texts = await until(
        gitter, lambda t: fixed in t and typo not in t, "the Gitter message to carry the edit"
    )
    assert texts.count(fixed) == 1, "edited in place, not posted again"

    await carol.redact(lobby, event_id)
    await until(gitter, lambda t: fixed not in t, "the Gitter message to be deleted")
