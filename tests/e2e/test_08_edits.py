"""Edits and redactions of the owner's messages reach Gitter: a real client's `m.replace`
edits the Gitter message, and its redaction deletes it."""

from harness import eventually, scenario, unique

LOBBY = "gitter-bridge/lobby"


async def carols_texts(gitter) -> list[str]:
    return [
        m["text"] for m in await gitter.messages(LOBBY) if m["fromUser"]["username"] == "carol"
    ]


@scenario
async def test_an_edit_and_a_redaction_from_a_real_client_reach_gitter(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)

    typo = unique("helo from nio")
    event_id = await carol.send(lobby, typo)
    await gitter.wait_message(LOBBY, "carol", typo)

    fixed = typo.replace("helo", "hello")
    await carol.edit(lobby, event_id, fixed)
    async def edited() -> list[str] | None:
        texts = await carols_texts(gitter)
        return texts if fixed in texts and typo not in texts else None

    texts = await eventually(edited, "the Gitter message to carry the edit")
    assert texts.count(fixed) == 1, "edited in place, not posted again"

    await carol.redact(lobby, event_id)

    async def deleted() -> bool:
        return fixed not in await carols_texts(gitter)

    await eventually(deleted, "the Gitter message to be deleted")


@scenario
async def test_threads_cross_both_ways(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)
    bob = env.ghost("bob")

    # Bob starts a thread on Gitter and answers in it: carol's client sees the answer in the
    # Matrix thread of the root.
    root_text = unique("a thread root")
    root = await gitter.post(LOBBY, "bob", root_text)
    root_event = await carol.wait_body(lobby, bob, root_text)
    answer_text = unique("an answer in the thread")
    await gitter.post(LOBBY, "bob", answer_text, parent=root["id"])
    answer = await carol.wait_body(lobby, bob, answer_text)
    relation = answer["content"]["m.relates_to"]
    assert relation["rel_type"] == "m.thread"
    assert relation["event_id"] == root_event["event_id"]
    assert relation["m.in_reply_to"]["event_id"] == root_event["event_id"]

    # Carol answers in the Matrix thread: on Gitter her message is in bob's thread.
    mine = unique("carol in the thread")
    await carol.send_in_thread(lobby, root_event["event_id"], mine)
    posted = await gitter.wait_message(LOBBY, "carol", mine)
    assert posted.get("parentId") == root["id"], posted


@scenario
async def test_a_gitter_mention_of_the_user_highlights_them(env, people, gitter):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)
    bob = env.ghost("bob")

    text = unique("@carol have a look")
    await gitter.post(LOBBY, "bob", text)
    event = await carol.wait_body(lobby, bob, text)
    content = event["content"]
    # Her client highlights and notifies: her own Matrix id in m.mentions, and a pill.
    assert carol.user_id in content["m.mentions"]["user_ids"], content
    assert f'href="https://matrix.to/#/{carol.user_id}"' in content["formatted_body"], content
