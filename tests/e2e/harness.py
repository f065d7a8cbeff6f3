"""Shared helpers of the end-to-end suite: Matrix users (matrix-nio clients against the real
Synapse), the fake Gitter (its `/_sim/gitter/*` control endpoints), the bridge process, and
bounded waits.

`scripts/e2e-synapse.sh` starts the servers and passes their addresses in `E2E_*` variables.
Every wait is bounded (`TIMEOUT` seconds per expectation) and says what it waited for.
"""

from __future__ import annotations

import asyncio
import functools
import os
import re
import secrets
import signal
import sqlite3
import subprocess
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Iterable, TypeVar
from urllib.parse import quote, urlencode

import aiohttp
from nio import (
    AsyncClient,
    AsyncClientConfig,
    JoinResponse,
    RegisterResponse,
    RoomCreateResponse,
    RoomLeaveResponse,
    RoomPreset,
    RoomRedactResponse,
    RoomSendResponse,
    SyncResponse,
)

# How long one expectation may take (a message to arrive, a notice to come, ...).
TIMEOUT = float(os.environ.get("E2E_TIMEOUT", "30"))
# How long one whole scenario may take.
SCENARIO_TIMEOUT = float(os.environ.get("E2E_SCENARIO_TIMEOUT", "240"))

T = TypeVar("T")

# Big enough that no sync of the suite is cut short ("limited"): every event is seen.
SYNC_FILTER = {"room": {"timeline": {"limit": 500}}}


# ---------------------------------------------------------------------------------------------
# The environment the script set up.


@dataclass(frozen=True)
class Env:
    hs_url: str
    server_name: str
    bot: str
    gitter_url: str
    as_url: str
    web_url: str
    bridge_bin: str
    bridge_config: str
    bridge_log: str
    bridge_pid_file: str
    synapse_db: str
    synapse_pid: int
    work_dir: str
    appservice_id: str

    @staticmethod
    def from_environ() -> "Env":
        def need(name: str) -> str:
            value = os.environ.get(name)
            if not value:
                raise RuntimeError(f"{name} is not set: run the suite with scripts/e2e-synapse.sh")
            return value

        server_name = need("E2E_SERVER_NAME")
        return Env(
            hs_url=need("E2E_HS_URL"),
            server_name=server_name,
            bot=f"@{need('E2E_BOT_LOCALPART')}:{server_name}",
            gitter_url=need("E2E_GITTER_URL"),
            as_url=need("E2E_AS_URL"),
            web_url=need("E2E_WEB_URL"),
            bridge_bin=need("E2E_BRIDGE_BIN"),
            bridge_config=need("E2E_BRIDGE_CONFIG"),
            bridge_log=need("E2E_BRIDGE_LOG"),
            bridge_pid_file=need("E2E_BRIDGE_PID_FILE"),
            synapse_db=need("E2E_SYNAPSE_DB"),
            synapse_pid=int(need("E2E_SYNAPSE_PID")),
            work_dir=need("E2E_WORK_DIR"),
            appservice_id=need("E2E_APPSERVICE_ID"),
        )

    def ghost(self, gitter_username: str) -> str:
        """The Matrix id of a Gitter user's ghost (config: ghost_template = gitter_{username})."""
        return f"@gitter_{gitter_username.lower()}:{self.server_name}"


# ---------------------------------------------------------------------------------------------
# One event loop for the whole session: the Matrix clients and their sync tasks live across
# scenarios. Scenarios are `async def` functions wrapped with @scenario.

LOOP = asyncio.new_event_loop()


def run(coro: Awaitable[T], timeout: float = SCENARIO_TIMEOUT) -> T:
    return LOOP.run_until_complete(asyncio.wait_for(coro, timeout))


def scenario(fn: Callable[..., Awaitable[None]]) -> Callable[..., None]:
    """Run an async test on the session's loop, bounded by SCENARIO_TIMEOUT."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> None:
        run(fn(*args, **kwargs))

    return wrapper


async def eventually(
    check: Callable[[], T | None | Awaitable[T | None]], what: str, timeout: float = TIMEOUT
) -> T:
    """Poll `check` (plain or async) until it returns something truthy; fail with `what`
    after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if asyncio.iscoroutine(value):
            value = await value
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        await asyncio.sleep(0.1)


def unique(prefix: str) -> str:
    """A short unique marker for message texts and user names."""
    return f"{prefix}-{secrets.token_hex(3)}"


# ---------------------------------------------------------------------------------------------
# HTTP


_http: aiohttp.ClientSession | None = None


def http() -> aiohttp.ClientSession:
    global _http
    if _http is None:
        _http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))
    return _http


def _cookie(resp, name: str) -> str:
    """The value the answer's Set-Cookie headers give cookie `name` (kept by hand: the
    bridge's pages are on 127.0.0.1, whose cookies aiohttp's default jar refuses)."""
    for header in resp.headers.getall("Set-Cookie", []):
        pair = header.split(";", 1)[0]
        key, _, value = pair.partition("=")
        if key.strip() == name:
            return value.strip()
    raise AssertionError(f"no {name} cookie in {resp.headers.getall('Set-Cookie', [])}")


async def follow_login_link(env: Env, link: str, gitter_username: str) -> str:
    """Do what a browser does with the bot's login link, choosing `gitter_username` on the fake
    Gitter's sign-in page (its `login_as` shortcut). Returns the bridge's final page."""
    # 1. The link shows a page naming the Matrix account, with one button (a form).
    async with http().get(link, allow_redirects=False) as resp:
        page = await resp.text()
        assert resp.status == 200, f"login link answered {resp.status}: {page[:300]}"
        csrf_cookie = _cookie(resp, "gb_csrf")
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, f"no confirm button on the login page: {page[:300]}"
    # 2. Pressing it sends the browser to Gitter's authorize URL.
    async with http().post(
        link,
        data={"csrf": match.group(1)},
        headers={"Cookie": f"gb_csrf={csrf_cookie}"},
        allow_redirects=False,
    ) as resp:
        assert resp.status in (302, 303, 307), f"the confirm answered {resp.status}"
        authorize = resp.headers["Location"]
        state_cookie = _cookie(resp, "gb_oauth")
    assert authorize.startswith(f"{env.gitter_url}/login/oauth/authorize?"), authorize
    # 3. The user signs in on Gitter, which sends the browser back with a code.
    async with http().get(
        f"{authorize}&{urlencode({'login_as': gitter_username})}", allow_redirects=False
    ) as resp:
        assert resp.status in (302, 303), f"Gitter's authorize answered {resp.status}"
        callback = resp.headers["Location"]
    assert callback.startswith(f"{env.web_url}/oauth/callback?"), callback
    # 4. The bridge's callback (from the same browser) exchanges the code and shows its page.
    async with http().get(
        callback, headers={"Cookie": f"gb_oauth={state_cookie}"}, allow_redirects=False
    ) as resp:
        page = await resp.text()
        assert resp.status == 200, f"OAuth callback answered {resp.status}: {page[:300]}"
    return page


# ---------------------------------------------------------------------------------------------
# The fake Gitter, through its control endpoints.


class FakeGitter:
    def __init__(self, env: Env):
        self.url = env.gitter_url

    async def post(
        self, room: str, username: str, text: str, status: bool = False, parent: str | None = None
    ) -> dict:
        """Post as a Gitter user (as if from another Gitter client), in the thread of `parent`
        when given; returns the Message."""
        body = {"room": room, "username": username, "text": text, "status": status}
        if parent is not None:
            body["parentId"] = parent
        async with http().post(f"{self.url}/_sim/gitter/post", json=body) as resp:
            assert resp.status == 200, f"post to {room} answered {resp.status}"
            return await resp.json()

    async def act(self, action: str, **fields: Any) -> dict:
        """Something a Gitter user or admin does in another Gitter client (`edit`, `delete`,
        `join`, `leave`, `room_details`, `rename`), as the fake's `/_sim/gitter/act` takes it."""
        body = {"do": action, **fields}
        async with http().post(f"{self.url}/_sim/gitter/act", json=body) as resp:
            assert resp.status == 200, f"{action} answered {resp.status}: {await resp.text()}"
            return await resp.json()

    async def messages(self, room: str) -> list[dict]:
        """The room's messages, oldest first."""
        url = f"{self.url}/_sim/gitter/rooms/{quote(room, safe='')}/messages"
        async with http().get(url) as resp:
            assert resp.status == 200, f"messages of {room} answered {resp.status}"
            return await resp.json()

    async def wait_message(
        self, room: str, username: str, text: str, timeout: float = TIMEOUT
    ) -> dict:
        """Wait until `username` said exactly `text` in `room`; returns that Message."""
        return (await self.wait_all(room, [(username, text)], timeout))[0]

    async def wait_all(
        self, room: str, expected: list[tuple[str, str]], timeout: float = TIMEOUT
    ) -> list[dict]:
        """Wait until every (username, text) of `expected` is in `room`; returns the Messages.
        On timeout, the error lists everything still missing."""
        deadline = time.monotonic() + timeout
        while True:
            messages = await self.messages(room)
            by_key = {(m["fromUser"]["username"], m["text"]): m for m in messages}
            missing = [key for key in expected if key not in by_key]
            if not missing:
                return [by_key[key] for key in expected]
            if time.monotonic() >= deadline:
                raise AssertionError(
                    f"timed out after {timeout:.0f}s: missing in Gitter {room}: {missing}"
                )
            await asyncio.sleep(0.2)


# ---------------------------------------------------------------------------------------------
# Synapse's view of the bridge, read from its database (read-only).


class Synapse:
    def __init__(self, env: Env):
        self.env = env

    def _query(self, sql: str) -> list[tuple]:
        db = sqlite3.connect(f"file:{self.env.synapse_db}?mode=ro", uri=True, timeout=5)
        try:
            return db.execute(sql, (self.env.appservice_id,)).fetchall()
        finally:
            db.close()

    def appservice_up(self) -> bool:
        """Whether Synapse sends new events to the bridge straight away (not "down", i.e. not
        queueing them for its recoverer)."""
        rows = self._query("SELECT state FROM application_services_state WHERE as_id = ?")
        return not rows or rows[0][0] != "down"

    def unsent_transactions(self) -> int:
        """Transactions Synapse made for the bridge but has not delivered (yet)."""
        rows = self._query("SELECT COUNT(*) FROM application_services_txns WHERE as_id = ?")
        return rows[0][0]


# ---------------------------------------------------------------------------------------------
# The bridge process (started by the script; restarted here).


class BridgeProcess:
    def __init__(self, env: Env):
        self.env = env

    def pid(self) -> int:
        with open(self.env.bridge_pid_file, encoding="ascii") as f:
            return int(f.read().strip())

    async def stop(self) -> None:
        """SIGTERM, then wait (bounded) for a graceful exit."""
        pid = self.pid()
        os.kill(pid, signal.SIGTERM)
        await eventually(lambda: not _alive(pid), f"gitter-bridge (pid {pid}) to exit on SIGTERM")

    async def start(self) -> None:
        """Start `gitter-bridge run` again (log appended) and wait until /health answers."""
        with open(self.env.bridge_log, "ab") as log:
            proc = subprocess.Popen(
                [self.env.bridge_bin, "run", "-c", self.env.bridge_config],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        with open(self.env.bridge_pid_file, "w", encoding="ascii") as f:
            f.write(f"{proc.pid}\n")
        await self.wait_healthy(proc)

    async def wait_healthy(self, proc: subprocess.Popen) -> None:
        async def healthy() -> bool:
            try:
                async with http().get(f"{self.env.web_url}/health") as resp:
                    return resp.status == 200
            except aiohttp.ClientError:
                return False

        deadline = time.monotonic() + TIMEOUT
        while not await healthy():
            if proc.poll() is not None:
                raise AssertionError(f"gitter-bridge exited with {proc.returncode} on start")
            if time.monotonic() >= deadline:
                raise AssertionError("timed out waiting for gitter-bridge's /health")
            await asyncio.sleep(0.2)


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far, from /proc/<pid>/stat (fields 14
    and 15, in clock ticks; the command name in field 2 may hold spaces, so fields are counted
    after its closing parenthesis)."""
    with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as f:
        after_name = f.read().rsplit(")", 1)[1].split()
    utime, stime = int(after_name[11]), int(after_name[12])
    return (utime + stime) / os.sysconf("SC_CLK_TCK")


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    if state == "Z":
        # Our own child (a restarted bridge): reap it.
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True


# ---------------------------------------------------------------------------------------------
# A Matrix user: a matrix-nio client with a background sync loop recording what it sees.

_made: list["MatrixUser"] = []  # every user of the session, closed by shutdown()


class MatrixUser:
    def __init__(self, env: Env, name: str):
        self.env = env
        self.localpart = unique(f"e2e-{name}")
        self.user_id = f"@{self.localpart}:{env.server_name}"
        self.client = AsyncClient(
            env.hs_url,
            self.user_id,
            config=AsyncClientConfig(encryption_enabled=False, store_sync_tokens=False),
        )
        self.timelines: dict[str, list[dict]] = defaultdict(list)
        self.invites: dict[str, str] = {}  # room id -> room name, while invited
        self.left: dict[str, dict] = {}  # room id -> our last membership event (left, kicked)
        self.control_room: str | None = None
        self._sync_task: asyncio.Task | None = None
        self._sync_error: BaseException | None = None

    def __repr__(self) -> str:
        return self.user_id

    # -- account and sync

    async def register(self) -> None:
        _made.append(self)
        resp = await self.client.register(self.localpart, secrets.token_urlsafe(16))
        assert isinstance(resp, RegisterResponse), f"registering {self.user_id}: {resp}"
        self._sync_task = asyncio.create_task(self._sync_forever())

    async def _sync_forever(self) -> None:
        try:
            while True:
                resp = await self.client.sync(timeout=5_000, sync_filter=SYNC_FILTER)
                if isinstance(resp, SyncResponse):
                    self._record(resp)
                else:
                    await asyncio.sleep(0.5)
        except asyncio.CancelledError:
            raise
        except BaseException as e:  # surfaced by every later wait
            self._sync_error = e
            raise

    def _record(self, resp: SyncResponse) -> None:
        for room_id, info in resp.rooms.invite.items():
            names = [
                e.source["content"].get("name", "")
                for e in info.invite_state
                if getattr(e, "source", {}).get("type") == "m.room.name"
            ]
            self.invites[room_id] = names[-1] if names else ""
            self.left.pop(room_id, None)
        for room_id, info in resp.rooms.join.items():
            self.invites.pop(room_id, None)
            self.left.pop(room_id, None)
            self.timelines[room_id].extend(e.source for e in info.timeline.events)
        for room_id, info in resp.rooms.leave.items():
            self.invites.pop(room_id, None)
            events = [e.source for e in info.timeline.events]
            self.timelines[room_id].extend(events)
            own = [
                e
                for e in events
                if e.get("type") == "m.room.member" and e.get("state_key") == self.user_id
            ]
            self.left[room_id] = own[-1] if own else {"content": {"membership": "leave"}}

    async def close(self) -> None:
        if self._sync_task is not None:
            self._sync_task.cancel()
            try:
                await self._sync_task
            except (asyncio.CancelledError, Exception):
                pass
        await self.client.close()

    async def _wait(
        self, check: Callable[[], T | None], what: str, timeout: float = TIMEOUT
    ) -> T:
        def checked() -> T | None:
            if self._sync_error is not None:
                raise AssertionError(f"{self.user_id}'s sync failed: {self._sync_error!r}")
            return check()

        return await eventually(checked, f"{self.user_id}: {what}", timeout)

    # -- rooms

    async def dm_bot(self) -> str:
        """Start a direct chat with the bot, as Element does."""
        resp = await self.client.room_create(
            is_direct=True, invite=[self.env.bot], preset=RoomPreset.trusted_private_chat
        )
        assert isinstance(resp, RoomCreateResponse), f"creating the DM: {resp}"
        self.control_room = resp.room_id
        return resp.room_id

    async def wait_invite(self, name: str) -> str:
        """Wait for an invite to a room named `name`; returns its id."""

        def find() -> str | None:
            return next((r for r, n in self.invites.items() if n == name), None)

        return await self._wait(find, f"an invite to a room named {name!r}")

    async def accept(self, room_id: str) -> None:
        resp = await self.client.join(room_id)
        assert isinstance(resp, JoinResponse), f"joining {room_id}: {resp}"
        await self._wait(lambda: room_id in self.client.rooms, f"to be in {room_id}")

    async def join_invite(self, name: str) -> str:
        room_id = await self.wait_invite(name)
        await self.accept(room_id)
        return room_id

    async def leave(self, room_id: str) -> None:
        resp = await self.client.room_leave(room_id)
        assert isinstance(resp, RoomLeaveResponse), f"leaving {room_id}: {resp}"
        await self.wait_left(room_id)

    async def wait_left(self, room_id: str) -> dict:
        """Wait until we are out of `room_id` (left or kicked); returns our membership event."""
        return await self._wait(lambda: self.left.get(room_id), f"to be out of {room_id}")

    def display_name(self, room_id: str, user_id: str) -> str | None:
        room = self.client.rooms.get(room_id)
        member = room.users.get(user_id) if room else None
        return member.display_name if member else None

    # -- messages

    async def send(self, room_id: str, body: str) -> str:
        resp = await self.client.room_send(
            room_id, "m.room.message", {"msgtype": "m.text", "body": body}
        )
        assert isinstance(resp, RoomSendResponse), f"sending to {room_id}: {resp}"
        return resp.event_id

    async def send_in_thread(self, room_id: str, root: str, body: str) -> str:
        """A message in the thread of `root`, with the reply fallback, as Element sends it."""
        content = {
            "msgtype": "m.text",
            "body": body,
            "m.relates_to": {
                "rel_type": "m.thread",
                "event_id": root,
                "is_falling_back": True,
                "m.in_reply_to": {"event_id": root},
            },
        }
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(resp, RoomSendResponse), f"sending to {room_id}: {resp}"
        return resp.event_id

    async def edit(self, room_id: str, event_id: str, body: str) -> str:
        """An edit of our message `event_id`, as Element sends it (spec: event replacements)."""
        content = {
            "msgtype": "m.text",
            "body": f"* {body}",
            "m.new_content": {"msgtype": "m.text", "body": body},
            "m.relates_to": {"rel_type": "m.replace", "event_id": event_id},
        }
        resp = await self.client.room_send(room_id, "m.room.message", content)
        assert isinstance(resp, RoomSendResponse), f"editing in {room_id}: {resp}"
        return resp.event_id

    async def redact(self, room_id: str, event_id: str) -> None:
        resp = await self.client.room_redact(room_id, event_id)
        assert isinstance(resp, RoomRedactResponse), f"redacting in {room_id}: {resp}"

    def messages(self, room_id: str, sender: str | None = None) -> list[dict]:
        """The m.room.message events seen in `room_id` (optionally from one sender)."""
        return [
            e
            for e in self.timelines.get(room_id, [])
            if e.get("type") == "m.room.message" and (sender is None or e["sender"] == sender)
        ]

    def events(self, room_id: str, event_type: str) -> list[dict]:
        """The events of a type seen in `room_id`'s timeline, oldest first."""
        return [e for e in self.timelines.get(room_id, []) if e.get("type") == event_type]

    async def wait_event(
        self, room_id: str, event_type: str, predicate: Callable[[dict], bool], what: str
    ) -> dict:
        def find() -> dict | None:
            return next((e for e in self.events(room_id, event_type) if predicate(e)), None)

        return await self._wait(find, f"{what} in {room_id}")

    def bodies(self, room_id: str, sender: str | None = None) -> list[str]:
        return [e["content"].get("body", "") for e in self.messages(room_id, sender)]

    async def wait_message(
        self,
        room_id: str,
        sender: str,
        predicate: Callable[[dict], bool],
        what: str,
        timeout: float = TIMEOUT,
    ) -> dict:
        def find() -> dict | None:
            return next((e for e in self.messages(room_id, sender) if predicate(e)), None)

        return await self._wait(find, f"{what} from {sender} in {room_id}", timeout)

    async def wait_body(
        self, room_id: str, sender: str, body: str, timeout: float = TIMEOUT
    ) -> dict:
        return await self.wait_message(
            room_id, sender, lambda e: e["content"].get("body") == body, f"{body!r}", timeout
        )

    async def wait_all(
        self, room_id: str, expected: list[tuple[str, str]], timeout: float = TIMEOUT
    ) -> None:
        """Wait until every (sender, body) of `expected` was seen in `room_id`. On timeout,
        the error lists everything still missing."""

        def missing() -> list[tuple[str, str]]:
            seen = {(e["sender"], e["content"].get("body")) for e in self.messages(room_id)}
            return [key for key in expected if key not in seen]

        try:
            await self._wait(lambda: not missing(), f"{len(expected)} messages", timeout)
        except AssertionError as e:
            raise AssertionError(f"{e}; missing in {room_id}: {missing()}") from None

    # -- the bot

    def notices(self) -> list[str]:
        """The bot's notices in the control room, oldest first."""
        assert self.control_room, "no control room yet"
        return [
            e["content"].get("body", "")
            for e in self.messages(self.control_room, self.env.bot)
            if e["content"].get("msgtype") == "m.notice"
        ]

    async def wait_notice(self, contains: str, since: int = 0) -> str:
        """Wait for a bot notice containing `contains`, among the notices after the first
        `since` ones; returns its body."""

        def find() -> str | None:
            return next((n for n in self.notices()[since:] if contains in n), None)

        return await self._wait(find, f"a bot notice containing {contains!r}")

    async def command(self, text: str, expect: str) -> str:
        """Send a command in the control room and wait for the notice that answers it."""
        since = len(self.notices())
        await self.send(self.control_room, text)
        return await self.wait_notice(expect, since)


LINK = re.compile(r"(https?://\S+/login/[A-Za-z0-9_\-]+)")


def login_link(notice: str) -> str:
    match = LINK.search(notice)
    assert match, f"no login link in the notice: {notice!r}"
    return match.group(1)


# ---------------------------------------------------------------------------------------------
# The people of the suite: Matrix users logged in to Gitter, made once and shared.


async def log_in(env: Env, user: MatrixUser, gitter_username: str) -> None:
    """A new user's way in: DM the bot, follow the login link, get the confirmation."""
    await user.dm_bot()
    greeting = await user.wait_notice("Log in to Gitter here:")
    since = len(user.notices())
    await follow_login_link(env, login_link(greeting), gitter_username)
    await user.wait_notice(f"You are now logged in as {gitter_username}.", since)


class People:
    """Matrix users by Gitter name, each registered and logged in on first use."""

    def __init__(self, env: Env):
        self.env = env
        self._users: dict[str, MatrixUser] = {}
        self.portals: dict[tuple[str, str], str] = {}  # (gitter user, room uri) -> room id

    async def logged_in(self, gitter_username: str, portals: Iterable[str] = ()) -> MatrixUser:
        user = self._users.get(gitter_username)
        if user is None:
            user = MatrixUser(self.env, gitter_username)
            await user.register()
            await log_in(self.env, user, gitter_username)
            self._users[gitter_username] = user
        for uri in portals:
            await self.portal(gitter_username, uri)
        return user

    def adopt(self, gitter_username: str, user: MatrixUser, portals: dict[str, str]) -> None:
        """Share a user a scenario logged in itself, with the portals it joined (uri -> id)."""
        self._users[gitter_username] = user
        for uri, room_id in portals.items():
            self.portals[(gitter_username, uri)] = room_id

    def forget(self, gitter_username: str) -> None:
        """The user logged out: the next `logged_in` makes a new one."""
        self._users.pop(gitter_username, None)
        for key in [k for k in self.portals if k[0] == gitter_username]:
            del self.portals[key]

    async def portal(self, gitter_username: str, uri: str) -> str:
        """The id of the user's (joined) portal for a Gitter room, accepting its invite."""
        key = (gitter_username, uri)
        if key not in self.portals:
            user = self._users[gitter_username]
            self.portals[key] = await user.join_invite(uri)
        return self.portals[key]


def shutdown() -> None:
    """End of the session: close every client and the HTTP session, then the loop."""

    async def close_all() -> None:
        for user in _made:
            await user.close()
        if _http is not None:
            await _http.close()

    run(close_all())
    LOOP.run_until_complete(LOOP.shutdown_asyncgens())
    LOOP.close()
