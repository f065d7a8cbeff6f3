"""What the bridge costs next to Synapse: the same traffic both ways, and the CPU seconds each
process spent on it, read from /proc. Reported, never asserted (a figure, not a test of speed):
printed, and written to cpu.json in the work dir, as `bridge_cpu_s / synapse_cpu_s`."""

import json
import os

from harness import cpu_seconds, scenario, unique

LOBBY = "gitter-bridge/lobby"
# Messages each way: enough to dwarf the fixed costs of a sync, few enough for CI.
EACH_WAY = 50


@scenario
async def test_the_bridge_spends_a_small_part_of_what_synapse_spends(
    env, people, gitter, bridge
):
    carol = await people.logged_in("carol", [LOBBY])
    lobby = await people.portal("carol", LOBBY)
    bob = env.ghost("bob")
    # Warm up both ways once, outside the measurement.
    await gitter.post(LOBBY, "bob", unique("warm-up"))
    await carol.send(lobby, unique("warm-up from Matrix"))

    bridge_pid = bridge.pid()
    before = (cpu_seconds(bridge_pid), cpu_seconds(env.synapse_pid))
    to_matrix = [unique(f"to matrix {i}") for i in range(EACH_WAY)]
    to_gitter = [unique(f"to gitter {i}") for i in range(EACH_WAY)]
    for text in to_matrix:
        await gitter.post(LOBBY, "bob", text)
    for text in to_gitter:
        await carol.send(lobby, text)
    # Everything arrived, once (the figure is of traffic that was really bridged).
    await carol.wait_body(lobby, bob, to_matrix[-1])
    for text in to_gitter:
        await gitter.wait_message(LOBBY, "carol", text)
    after = (cpu_seconds(bridge_pid), cpu_seconds(env.synapse_pid))
    bodies = carol.bodies(lobby, bob)
    assert all(bodies.count(t) == 1 for t in to_matrix)

    bridge_s, synapse_s = after[0] - before[0], after[1] - before[1]
    figures = {
        "events": 2 * EACH_WAY,
        "bridge_cpu_s": round(bridge_s, 3),
        "synapse_cpu_s": round(synapse_s, 3),
        "bridge_per_synapse": round(bridge_s / synapse_s, 4) if synapse_s > 0 else None,
    }
    print("cpu:", json.dumps(figures))
    with open(os.path.join(env.work_dir, "cpu.json"), "w", encoding="ascii") as f:
        json.dump(figures, f)
