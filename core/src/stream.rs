//! Streams and catch-up: one stream per Gitter room, read with the token of one logged-in
//! member (the reader).
//!
//! On every (re)connect the core first pages `chatMessages?afterId=<cursor>` so nothing sent
//! while the stream was down is missed; stream messages that arrive meanwhile wait in a buffer
//! so the room's order is kept. The stream has no resume token and is at-most-once
//! (docs/gitter-api.md §5), which is why the cursor, not the stream, is the source of truth. A room
//! read for the first time has no cursor: its baseline (the newest message; a new portal's
//! history is read apart, `crate::history`) is read and committed before its stream opens, so a crash never finds a
//! streamed message without a cursor to catch up from. If the reader logs out or its token
//! dies, another member takes over.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::bridge::Bridge;
use crate::dedupe::Window;
use crate::effect::{Action, Answer, GitterCall, Lane, StreamCall, StreamThen, Then};
use crate::ids::{GitterMessageId, GitterRoomId};
use crate::input::{EffectOutput, Failure, FailureKind, GitterMessage};
use crate::state::Change;
use crate::timers::Deadlines;

/// The smallest ObjectId: `afterId` of it reads a room from its first message.
pub(crate) const ZERO_OBJECT_ID: &str = "000000000000000000000000";

/// In-memory state of a room's stream.
#[derive(Clone, Debug, Default)]
pub(crate) struct StreamState {
    /// The stream is wanted and not closed since: a `StreamCall::Open` was emitted, or, for a room
    /// without a cursor, the baseline read that comes before it.
    pub(crate) open: bool,
    /// A catch-up is under way: stream messages wait in `buffer`.
    pub(crate) catching_up: bool,
    /// Stream messages that arrived during catch-up.
    pub(crate) buffer: VecDeque<GitterMessage>,
    /// Messages held back, in order, until the sends of their authors complete (so the
    /// stream's copy of our own send is recognised as an echo).
    pub(crate) held: VecDeque<GitterMessage>,
    /// The stream (re)connected while a catch-up ran: one more runs after it. However often
    /// a flapping stream reconnects, at most one catch-up runs and one waits.
    pub(crate) again: bool,
    /// Waiting messages were let go at the memory bound: every message is ignored until a
    /// catch-up from the cursor (which never passed them) reads them again.
    pub(crate) resync: bool,
}

/// The streams sub-machine's state: every room's stream, its waiting messages, the ids it
/// relayed last, and when failed catch-ups are tried again. Not persisted: streams are
/// re-opened at startup, and the cursor keeps catch-ups from reading relayed ids again.
#[derive(Clone, Debug, Default)]
pub(crate) struct Streams {
    rooms: BTreeMap<GitterRoomId, StreamState>,
    catch_ups: Deadlines<GitterRoomId>,
    recent: HashMap<GitterRoomId, Window<GitterMessageId>>,
    /// Readers Gitter refused a room's stream to in this run (403: no longer a member, as
    /// when they left it while the bridge was down): another member reads it instead.
    refused: std::collections::HashSet<(GitterRoomId, ruma::OwnedUserId)>,
}

impl Streams {
    /// The timer this sub-machine needs.
    pub(crate) fn deadline(&self) -> Option<crate::Timestamp> {
        self.catch_ups.next()
    }

    /// Every stream closed (a start).
    pub(crate) fn clear(&mut self) {
        self.rooms.clear();
        self.catch_ups.clear_all();
    }

    /// The stream state of a room, if any.
    pub(crate) fn get(&self, room: &GitterRoomId) -> Option<&StreamState> {
        self.rooms.get(room)
    }

    /// The stream state of a room, created on first use.
    pub(crate) fn entry(&mut self, room: &GitterRoomId) -> &mut StreamState {
        self.rooms.entry(room.clone()).or_default()
    }

    /// Forgets a room's stream (no reader any more).
    pub(crate) fn remove(&mut self, room: &GitterRoomId) {
        self.rooms.remove(room);
        self.catch_ups.clear(room);
    }

    /// Whether the room's stream is wanted.
    pub(crate) fn is_open(&self, room: &GitterRoomId) -> bool {
        self.rooms.get(room).is_some_and(|s| s.open)
    }

    /// Messages held or buffered for a room.
    pub(crate) fn waiting(&self, room: &GitterRoomId) -> usize {
        self.rooms
            .get(room)
            .map_or(0, |s| s.held.len() + s.buffer.len())
    }

    /// Replaces a waiting (held or buffered) message by its edited version; returns whether
    /// it was waiting.
    pub(crate) fn replace_waiting(&mut self, room: &GitterRoomId, message: &GitterMessage) -> bool {
        let Some(state) = self.rooms.get_mut(room) else {
            return false;
        };
        match state
            .held
            .iter_mut()
            .chain(state.buffer.iter_mut())
            .find(|m| m.id == message.id)
        {
            Some(waiting) => {
                *waiting = message.clone();
                true
            }
            None => false,
        }
    }

    /// Drops a waiting message that was deleted.
    pub(crate) fn remove_waiting(&mut self, room: &GitterRoomId, id: &GitterMessageId) {
        if let Some(state) = self.rooms.get_mut(room) {
            state.held.retain(|m| &m.id != id);
            state.buffer.retain(|m| &m.id != id);
        }
    }

    /// The ids relayed last in a room.
    pub(crate) fn recent(
        &mut self,
        room: &GitterRoomId,
        capacity: usize,
    ) -> &mut Window<GitterMessageId> {
        self.recent
            .entry(room.clone())
            .or_insert_with(|| Window::new(capacity))
    }

    /// A failed catch-up of `room` is tried again at `at`.
    pub(crate) fn catch_up_at(&mut self, room: &GitterRoomId, at: crate::Timestamp) {
        self.catch_ups.set(room.clone(), at);
    }

    /// No catch-up retry of `room` is due any more.
    pub(crate) fn cancel_catch_up(&mut self, room: &GitterRoomId) {
        self.catch_ups.clear(room);
    }

    /// The rooms whose catch-up retry has come.
    pub(crate) fn catch_ups_due(&mut self, now: crate::Timestamp) -> Vec<GitterRoomId> {
        self.catch_ups.take_due(now)
    }
}

impl Bridge {
    /// Makes sure a room with receiving portals has a reader with a valid token and an open
    /// stream, and that a room without any has none.
    pub(crate) fn ensure_reader(&mut self, room: &GitterRoomId) {
        let Some(mut record) = self.state.gitter_rooms.get(room).cloned() else {
            return;
        };
        let owners = self.portals.owners(room);
        let candidates: Vec<_> = owners
            .into_iter()
            .filter(|o| self.portal_receives(o, room) && self.valid_login(o).is_some())
            .filter(|o| !self.streams.refused.contains(&(room.clone(), o.clone())))
            .collect();
        let current_ok = record
            .reader
            .as_ref()
            .is_some_and(|r| candidates.contains(r));
        if current_ok {
            if !self.streams.is_open(room) {
                let reader = record.reader.clone().expect("checked above");
                self.open_stream(room, &reader);
            }
            return;
        }
        match candidates.first().cloned() {
            Some(reader) => {
                record.reader = Some(reader.clone());
                self.change(Change::PutGitterRoom(record));
                self.open_stream(room, &reader);
            }
            None => {
                if record.reader.take().is_some() {
                    self.change(Change::PutGitterRoom(record));
                }
                if self.streams.is_open(room) {
                    self.emit(
                        Lane::Stream(room.clone()),
                        Action::Stream(StreamCall::Close { room: room.clone() }),
                    );
                }
                self.streams.remove(room);
            }
        }
    }

    pub(crate) fn open_stream(&mut self, room: &GitterRoomId, reader: &ruma::OwnedUserId) {
        let Some(login) = self.valid_login(reader) else {
            return;
        };
        let state = self.streams.entry(room);
        state.open = true;
        let has_cursor = self.state.cursors.contains_key(room);
        if !has_cursor {
            // A room never read before: its baseline (where its history ends) is read and
            // committed before the stream opens, so no message the stream delivers can fall
            // into a window where a crash would lose it. Messages sent between the baseline
            // and the stream's connect are caught up from the committed cursor.
            self.fetch_after(room, None);
            return;
        }
        self.emit(
            Lane::Stream(room.clone()),
            Action::Stream(StreamCall::Open {
                room: room.clone(),
                token: login.token,
            }),
        );
    }

    pub(crate) fn on_stream_connected(&mut self, room: GitterRoomId) {
        let Some(record) = self.state.gitter_rooms.get(&room).cloned() else {
            return;
        };
        if record.reader.is_none() {
            return;
        }
        self.start_catch_up(&room);
    }

    /// Starts a catch-up from the cursor, or queues one behind the catch-up that runs.
    fn start_catch_up(&mut self, room: &GitterRoomId) {
        let state = self.streams.entry(room);
        if state.catching_up {
            state.again = true;
            return;
        }
        state.catching_up = true;
        state.again = false;
        self.streams.cancel_catch_up(room);
        let cursor = self.state.cursors.get(room).cloned();
        self.fetch_after(room, cursor);
    }

    /// After messages were let go at the memory bound: once no catch-up runs and no send of
    /// the room is in flight (whose echo must be recognised), read again from the cursor.
    pub(crate) fn resync_if_free(&mut self, room: &GitterRoomId) {
        let Some(state) = self.streams.get(room) else {
            return;
        };
        if !state.resync || state.catching_up {
            return;
        }
        if self.relay.room_sending(room) {
            return;
        }
        self.streams.entry(room).resync = false;
        self.start_catch_up(room);
    }

    pub(crate) fn on_stream_disconnected(&mut self, room: GitterRoomId, reason: FailureKind) {
        let reader = self
            .state
            .gitter_rooms
            .get(&room)
            .and_then(|r| r.reader.clone());
        let Some(reader) = reader else {
            return;
        };
        // The adapter does not reconnect after a refusal (403/404: this reader cannot read
        // the room, and without another one every portal of it would starve) nor after a 401
        // (the stream is gone with the token): the stream is closed, and another reader
        // found.
        let refused = matches!(reason, FailureKind::Forbidden | FailureKind::NotFound);
        if !refused && reason != FailureKind::TokenRevoked {
            return;
        }
        self.streams.entry(&room).open = false;
        if refused {
            self.streams.refused.insert((room.clone(), reader));
        } else {
            self.invalidate_login(&reader);
        }
        self.ensure_reader(&room);
    }

    fn fetch_after(&mut self, room: &GitterRoomId, after: Option<GitterMessageId>) {
        let reader = self
            .state
            .gitter_rooms
            .get(room)
            .and_then(|r| r.reader.clone());
        let Some(login) = reader.and_then(|r| self.valid_login(&r)) else {
            return;
        };
        // Without a cursor (a room never read before) the newest message becomes the
        // baseline; each new portal reads its own history (crate::history).
        let limit = if after.is_some() {
            self.config.catch_up_page
        } else {
            1
        };
        self.ask(
            Lane::Stream(room.clone()),
            Action::Gitter {
                token: login.token,
                call: GitterCall::FetchMessages {
                    room: room.clone(),
                    after: after.clone(),
                    limit,
                },
            },
            Then::Stream(StreamThen::CaughtUp {
                room: room.clone(),
                after,
            }),
        );
    }

    pub(crate) fn on_stream_answer(&mut self, then: StreamThen, answer: Answer) {
        let StreamThen::CaughtUp { room, after } = then;
        match answer.result {
            Ok(EffectOutput::GitterMessages(messages)) => self.on_fetched(room, after, messages),
            Ok(got) => self.unexpected(answer.id, answer.name, &got),
            Err(failure) => self.on_fetch_failed(room, &failure),
        }
    }

    fn on_fetched(
        &mut self,
        room: GitterRoomId,
        after: Option<GitterMessageId>,
        messages: Vec<GitterMessage>,
    ) {
        let Some(record) = self.state.gitter_rooms.get(&room) else {
            return;
        };
        if after.is_none() {
            // A second baseline answer (two reads went out: the reader changed, or the
            // stream was closed and wanted again, while the first was pending) finds the
            // cursor set and changes nothing: the first answer opened the stream.
            if self.state.cursors.contains_key(&room) {
                return;
            }
            let reader = record.reader.clone();
            // The newest message is the baseline. An empty room gets the zero ObjectId,
            // which sorts before every id, so later catch-ups read from its start.
            let baseline = match messages.last() {
                Some(last) => last.id.clone(),
                None => GitterMessageId::new(ZERO_OBJECT_ID),
            };
            self.change(Change::SetCursor(room.clone(), baseline));
            self.streams.cancel_catch_up(&room);
            // The stream opens only now that the baseline is committed with this step.
            if self.streams.is_open(&room)
                && let Some(login) = reader.and_then(|r| self.valid_login(&r))
            {
                self.emit(
                    Lane::Stream(room.clone()),
                    Action::Stream(StreamCall::Open {
                        room: room.clone(),
                        token: login.token,
                    }),
                );
            }
            return;
        }
        let full = messages.len() >= self.config.catch_up_page as usize;
        let last = messages.last().map(|m| m.id.clone());
        for message in messages {
            self.on_gitter_message(room.clone(), message, true);
        }
        if self.streams.get(&room).is_some_and(|s| s.resync) {
            // Messages of this page were let go: paging on would relay later ones before
            // them. The catch-up ends here and starts over from the cursor when free.
            self.finish_catch_up(&room);
            return;
        }
        if full && last.is_some() {
            self.fetch_after(&room, last);
        } else {
            self.finish_catch_up(&room);
        }
    }

    fn finish_catch_up(&mut self, room: &GitterRoomId) {
        self.streams.entry(room).catching_up = false;
        let buffered = std::mem::take(&mut self.streams.entry(room).buffer);
        for message in buffered {
            self.on_gitter_message(room.clone(), message, true);
        }
        if std::mem::take(&mut self.streams.entry(room).again) {
            self.start_catch_up(room);
        } else {
            self.resync_if_free(room);
        }
    }

    fn on_fetch_failed(&mut self, room: GitterRoomId, failure: &Failure) {
        let reader_valid = self
            .state
            .gitter_rooms
            .get(&room)
            .and_then(|r| r.reader.clone())
            .is_some_and(|r| self.valid_login(&r).is_some());
        if failure.kind == FailureKind::TokenRevoked && !reader_valid {
            // invalidate_login handed the room to another reader, whose stream will connect
            // and catch up. A reader still valid means the read used a token replaced since
            // (a new login while it was out): it is retried like any failure, with the new one.
            return;
        }
        let at = self.step.now.plus_ms(self.config.catch_up_retry_ms);
        self.streams.catch_up_at(&room, at);
    }

    pub(crate) fn retry_catch_ups(&mut self) {
        for room in self.streams.catch_ups_due(self.step.now) {
            let cursor = self.state.cursors.get(&room).cloned();
            self.fetch_after(&room, cursor);
        }
    }
}
