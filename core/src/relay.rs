//! Relaying messages both ways.
//!
//! Gitter -> Matrix: every portal of the room gets the message from the author's ghost,
//! once: a message is skipped in a portal that already maps its Gitter id (a duplicate
//! delivery, or the echo of the owner's own send), and in the whole room when it is among the
//! room's recent ids. The room's cursor advances in the same change set.
//!
//! Matrix -> Gitter: only the portal owner's messages, posted with the owner's token. The
//! stream's copy of such a send can arrive before the send's result; so while a user has a
//! send in flight to a room, stream messages from that user (and everything after them, to
//! keep the order) are held until the send completes and the echo can be recognised by id.

use std::collections::{BTreeMap, HashMap, VecDeque};

use crate::bridge::Bridge;
use crate::effect::{
    Action, Answer, GitterCall, Lane, MatrixCall, MatrixContent, PendingRelay, PendingSend,
    RelayRef, RelayThen, SendOrigin, StoreCall, Then,
};
use crate::ids::{GitterMessageId, GitterRoomId, GitterUserId, OwnedEventId, OwnedUserId};
use crate::input::{EffectOutput, Failure, FailureKind, GitterMessage, MatrixEvent, MsgType};
use crate::state::{Change, MessageRecord, Origin, PortalState, Removal, Snapshot};

/// The failure message of a send given up after `send_give_up_ms` (told in its own words).
pub(crate) const GAVE_UP: &str = "Gitter kept failing on this message; the bridge gave up";

/// A portal: its owner and its Gitter room.
type PortalKey = (OwnedUserId, GitterRoomId);

/// A mapping's name in the hot set's queues.
#[derive(Clone, Debug)]
struct HotName {
    /// In the order mappings joined the hot set.
    seq: u64,
    /// The Gitter message.
    id: GitterMessageId,
    /// The owner's own send: it must stay while its echo may still come.
    from_matrix: bool,
}

impl HotName {
    /// Whether the mapping must stay, told without looking it up ([`echo_may_come`]): while
    /// many sends wait for their echo, a trim then costs no look-up at all.
    fn must_stay(&self, cursor: Option<&GitterMessageId>) -> bool {
        echo_may_come(self.from_matrix, &self.id, cursor)
    }
}

/// Whether a mapping must stay in the hot set: the owner's own send (`from_matrix`) that its
/// room's cursor has not passed yet. Its echo may still come from Gitter, and without the
/// mapping the owner's message would be relayed back into their portal.
fn echo_may_come(
    from_matrix: bool,
    id: &GitterMessageId,
    cursor: Option<&GitterMessageId>,
) -> bool {
    from_matrix && cursor.is_none_or(|c| id.as_str() > c.as_str())
}

/// The relay's state beside the persisted mappings: the Gitter sends in flight per room and
/// author (derived from the outbox), and the queues that keep the hot set within its bounds.
#[derive(Clone, Debug, Default)]
pub(crate) struct Relay {
    inflight: BTreeMap<(GitterRoomId, GitterUserId), usize>,
    /// Oldest first: the oldest leaves the hot set first (it stays in the store).
    hot_order: VecDeque<(PortalKey, HotName)>,
    /// The same, per portal, for the per-portal bound. A portal's queue drops, from its
    /// front, the names the overall trim passed (by number), and goes when it is empty: so
    /// the names of mappings no longer held do not pile up in the queues of portals that got
    /// nothing since.
    portal_order: HashMap<PortalKey, VecDeque<HotName>>,
    /// The number the next mapping joining the hot set gets: the queues' names carry it, so
    /// a portal's queue can drop the names the overall queue has passed by comparing numbers.
    hot_seq: u64,
    /// The names in `hot_order` whose mapping its portal's trim let go already, by number:
    /// the overall bound counts the mappings held, not those names (else a busy portal's
    /// own trimmed names would push a quiet portal's mappings out, the very thing the
    /// per-portal bound is for), and skips them without a look-up when it reaches them.
    /// Never more than `hot_order` holds.
    hot_dead: std::collections::HashSet<u64>,
    /// Portals told in this run that an edit became a correction (told once).
    told_past_window: std::collections::BTreeSet<(OwnedUserId, GitterRoomId)>,
    /// The current username of each Gitter user seen in this run (a ghost keeps its Matrix id
    /// when its user is renamed, so its id does not tell the username).
    usernames: std::collections::HashMap<GitterUserId, String>,
}

impl Relay {
    /// The state of a restored snapshot.
    pub(crate) fn restore(state: &Snapshot) -> Relay {
        let mut relay = Relay::default();
        // Oldest first in Gitter's order (ObjectIds sort as they were made).
        let mut hot: Vec<&MessageRecord> = state.messages.values().collect();
        // By owner too, so equal ids of several portals keep one order (the map has none).
        hot.sort_by(|a, b| (a.gitter_id.as_str(), &a.owner).cmp(&(b.gitter_id.as_str(), &b.owner)));
        for m in hot {
            relay.remember(m);
        }
        for e in state.outbox.values() {
            relay.observe_emitted(&e.action);
        }
        relay
    }

    /// Follows an effect put in the outbox for the first time.
    pub(crate) fn observe_emitted(&mut self, action: &crate::Action) {
        if let Some(GitterCall::SendMessage {
            room, gitter_user, ..
        }) = action.gitter_send()
        {
            *self
                .inflight
                .entry((room.clone(), gitter_user.clone()))
                .or_default() += 1;
        }
    }

    /// Follows an effect done (or failed for good).
    pub(crate) fn observe_done(&mut self, action: &crate::Action) {
        if let Some(GitterCall::SendMessage {
            room, gitter_user, ..
        }) = action.gitter_send()
        {
            let key = (room.clone(), gitter_user.clone());
            if let Some(n) = self.inflight.get_mut(&key) {
                *n -= 1;
                if *n == 0 {
                    self.inflight.remove(&key);
                }
            }
        }
    }

    /// Whether `author` has a send to `room` in flight.
    pub(crate) fn sending(&self, room: &GitterRoomId, author: &GitterUserId) -> bool {
        self.inflight.contains_key(&(room.clone(), author.clone()))
    }

    /// Whether anybody has a send to `room` in flight.
    pub(crate) fn room_sending(&self, room: &GitterRoomId) -> bool {
        self.inflight
            .range((room.clone(), GitterUserId::new(""))..)
            .next()
            .is_some_and(|((r, _), _)| r == room)
    }

    /// Whether this is the first edit of the portal in this run to come past Gitter's
    /// edit window (the owner is told then, and only then).
    pub(crate) fn first_past_window(&mut self, owner: &OwnedUserId, room: &GitterRoomId) -> bool {
        self.told_past_window.insert((owner.clone(), room.clone()))
    }

    /// The username of a Gitter user, as their last message in this run gave it.
    pub(crate) fn username(&self, user: &GitterUserId) -> Option<&str> {
        self.usernames.get(user).map(String::as_str)
    }

    /// Remembers a Gitter user's current username.
    pub(crate) fn saw_username(&mut self, user: &crate::GitterUser) {
        if self.username(&user.id) != Some(user.username.as_str()) {
            self.usernames
                .insert(user.id.clone(), user.username.clone());
        }
    }

    /// Puts a mapping at the back of the hot set's queues (the newest), under the next
    /// sequence number.
    fn remember(&mut self, m: &MessageRecord) -> PortalKey {
        let name = HotName {
            seq: self.hot_seq,
            id: m.gitter_id.clone(),
            from_matrix: m.origin == Origin::Matrix,
        };
        self.hot_seq += 1;
        let portal = (m.owner.clone(), m.gitter_room.clone());
        match self.portal_order.get_mut(&portal) {
            Some(queue) => queue.push_back(name.clone()),
            None => {
                self.portal_order
                    .insert(portal.clone(), VecDeque::from([name.clone()]));
            }
        }
        self.hot_order.push_back((portal.clone(), name));
        portal
    }

    /// A mapping joined the hot set: keeps the hot set (`messages`) within `bound`, and the
    /// mapping's portal within `per_portal`, letting the oldest go (they stay in the store),
    /// except those whose echo may still come ([`echo_may_come`]).
    pub(crate) fn hot_added(
        &mut self,
        state: &mut Snapshot,
        (bound, per_portal): (usize, usize),
        added: &MessageRecord,
    ) {
        let cursors = &state.cursors;
        let messages = &mut state.messages;
        let echo_to_come = |m: &MessageRecord| {
            echo_may_come(
                m.origin == Origin::Matrix,
                &m.gitter_id,
                cursors.get(&m.gitter_room),
            )
        };
        let portal = self.remember(added);
        let cursor = cursors.get(&added.gitter_room);
        // A few candidates per new mapping, not a scan, and none after one that must stay
        // (the ones after it most likely must too: the owner's sends, in order; the next
        // mapping tries again): while many sends wait for their echo a queue may stay above
        // its bound (they are needed), and trimming stays O(1).
        if let Some(queue) = self.portal_order.get_mut(&portal) {
            for _ in 0..4 {
                if queue.len() <= per_portal {
                    break;
                }
                let Some(name) = queue.pop_front() else {
                    break;
                };
                if name.must_stay(cursor) {
                    queue.push_back(name);
                    break;
                }
                // The record has the last word (`remove_unless`).
                let seq = name.seq;
                match messages.remove_unless(&added.owner, name.id, echo_to_come) {
                    Removal::Kept(id) => {
                        queue.push_back(HotName { id, ..name });
                        break;
                    }
                    // Its name in the overall queue no longer counts.
                    Removal::Removed => {
                        self.hot_dead.insert(seq);
                    }
                    Removal::Absent => {}
                }
            }
        }
        let mut candidates = 0;
        while candidates < 4 {
            if self.hot_dead.len() > self.hot_order.len() {
                // Can only happen when a mapping let go came back under a new name and its
                // portal's trim met the old one: forgetting the dead names only makes the
                // trim stricter for a while, and keeps this set within the queue's size.
                self.hot_dead.clear();
            }
            if self.hot_order.len() - self.hot_dead.len() <= bound {
                return;
            }
            let Some((portal, name)) = self.hot_order.pop_front() else {
                return;
            };
            if self.hot_dead.remove(&name.seq) {
                // Let go by its portal's trim already (and its portal's queue dropped it).
                continue;
            }
            candidates += 1;
            if name.must_stay(cursors.get(&portal.1)) {
                self.hot_order.push_back((portal, name));
                break;
            }
            let s = name.seq;
            if let Removal::Kept(id) = messages.remove_unless(&portal.0, name.id, echo_to_come) {
                self.hot_order.push_back((portal, HotName { id, ..name }));
                break;
            }
            // The portal's queue lets go of every name as old as this one or older, by
            // number, without a look-up: they left the hot set already, or they are sends
            // waiting for their echo, which the overall queue still holds (and lets go once
            // the echo came). So a portal that gets nothing any more keeps no names.
            if let Some(queue) = self.portal_order.get_mut(&portal) {
                while queue.front().is_some_and(|n| n.seq <= s) {
                    queue.pop_front();
                }
                if queue.is_empty() {
                    self.portal_order.remove(&portal);
                }
            }
        }
    }
}

impl Bridge {
    /// A Gitter message from a stream (`from_catch_up` false) or a catch-up page.
    pub(crate) fn on_gitter_message(
        &mut self,
        room: GitterRoomId,
        message: GitterMessage,
        from_catch_up: bool,
    ) {
        if !self.state.gitter_rooms.contains_key(&room) {
            return;
        }
        if self.streams.get(&room).is_some_and(|s| s.resync) {
            // Messages were let go at the memory bound: the cursor has not passed them, and
            // the catch-up that follows reads them (and this one) again in order.
            return;
        }
        if !from_catch_up && self.streams.get(&room).is_some_and(|s| s.catching_up) {
            if self.streams.waiting(&room) >= self.config.max_held_per_room {
                self.let_go_held(&room);
                return;
            }
            self.streams.entry(&room).buffer.push_back(message);
            return;
        }
        let author_sending = self.relay.sending(&room, &message.from.id);
        if author_sending || !self.streams.get(&room).is_none_or(|s| s.held.is_empty()) {
            if self.streams.waiting(&room) >= self.config.max_held_per_room {
                self.let_go_held(&room);
                return;
            }
            self.streams.entry(&room).held.push_back(message);
            return;
        }
        self.relay_to_portals(&room, &message);
    }

    /// The newest message of the room the bridge has seen: the last one waiting (held or
    /// buffered, in the room's order after the cursor), else the cursor. A send made now
    /// comes after it on Gitter, so a reconcile never needs to look further back.
    pub(crate) fn newest_seen(&self, room: &GitterRoomId) -> Option<crate::GitterMessageId> {
        let waiting = self.streams.get(room).and_then(|s| {
            s.buffer
                .back()
                .or_else(|| s.held.back())
                .map(|m| m.id.clone())
        });
        waiting.or_else(|| self.state.cursors.get(room).cloned())
    }

    /// The memory bound of a room's waiting messages is reached: they are dropped, and the
    /// room reads everything after its cursor again once nothing holds it any more. Nothing
    /// is lost because the cursor only passes messages that were relayed.
    fn let_go_held(&mut self, room: &GitterRoomId) {
        let state = self.streams.entry(room);
        state.held.clear();
        state.buffer.clear();
        state.resync = true;
        self.warn(crate::CoreError::Ignored(format!(
            "room {room}: more than {} messages waiting; they will be read again from the cursor",
            self.config.max_held_per_room
        )));
        self.resync_if_free(room);
    }

    /// Releases held messages whose authors have no send in flight any more.
    fn drain_held(&mut self, room: &GitterRoomId) {
        self.resync_if_free(room);
        while let Some(front) = self.streams.get(room).and_then(|s| s.held.front()) {
            if self.relay.sending(room, &front.from.id) {
                break;
            }
            let message = self
                .streams
                .entry(room)
                .held
                .pop_front()
                .expect("front exists");
            self.relay_to_portals(room, &message);
        }
    }

    fn relay_to_portals(&mut self, room: &GitterRoomId, message: &GitterMessage) {
        if !self.state.gitter_rooms.contains_key(room) {
            return;
        }
        // A copy read before an edit or a deletion Gitter reported since (a catch-up page
        // fetched just before it): relayed as edited, or not at all. The cursor passes it
        // either way.
        if self.realtime.was_removed(&message.id) {
            self.change(Change::SetCursor(room.clone(), message.id.clone()));
            return;
        }
        let edited = self.realtime.edited_version(&message.id).cloned();
        let message = edited.as_ref().unwrap_or(message);
        if self
            .streams
            .recent(room, self.config.recent_capacity)
            .contains(&message.id)
        {
            return;
        }
        self.relay.saw_username(&message.from);
        let owners = self.portals.owners(room);
        // Converted once for every portal of the room, and only if one of them gets it now.
        let mut relayed = None;
        for owner in owners {
            let Some(state) = self
                .state
                .portals
                .get(&(owner.clone(), room.clone()))
                .map(|p| p.state)
            else {
                continue;
            };
            if self.state.messages.contains(&owner, &message.id) {
                // Already bridged here, or the echo of the owner's own send.
                continue;
            }
            if !self.config.permissions.allows(&owner) {
                // Not allowed any more: this portal gets nothing until they are again.
                continue;
            }
            match state {
                PortalState::Closed => {}
                PortalState::Creating => self.queue_mapped(&owner, room, message),
                PortalState::Active | PortalState::Invited => {
                    let relayed = relayed.get_or_insert_with(|| crate::format::relayed(message));
                    self.deliver(&owner, room, message, relayed)
                }
            }
        }
        self.streams
            .recent(room, self.config.recent_capacity)
            .push(message.id.clone());
        // The cursor and the mappings are the step's only writes (small rows, not the room).
        self.change(Change::SetCursor(room.clone(), message.id.clone()));
    }

    /// Sends a Gitter message into one active portal as its author's ghost, as converted
    /// once for all of them ([`crate::format::relayed`]).
    pub(crate) fn deliver(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        message: &GitterMessage,
        relayed: &crate::format::Relayed,
    ) {
        let Some(room_id) = self
            .state
            .portals
            .get(&(owner.clone(), room.clone()))
            .and_then(|p| p.room_id.clone())
        else {
            return;
        };
        let Some(ghost) = self.ghost_in_portal(owner, room, &message.from) else {
            return;
        };
        // Its mentions are the portal's own (the owner is pinged by their own id).
        let mut content = relayed.content.clone();
        self.mentions_in(owner, message, &mut content);
        self.change(Change::PutMessage(MessageRecord {
            owner: owner.clone(),
            gitter_room: room.clone(),
            gitter_id: message.id.clone(),
            event_id: None,
            origin: Origin::Gitter,
            at: self.step.now,
        }));
        let lane = Lane::Portal {
            owner: owner.clone(),
            room: room.clone(),
        };
        let relay = RelayRef {
            owner: owner.clone(),
            gitter_id: message.id.clone(),
        };
        // A thread reply goes into the thread of its root's event in this portal.
        let root = message.parent_id.as_ref().map(|parent| {
            let hot = self.state.messages.get(owner, parent);
            (parent, hot.and_then(|m| m.event_id.clone()))
        });
        // Stamped with its Gitter time (the application service `ts` parameter): a message
        // caught up after an outage or a restart, or read as history, shows when it was
        // written, not when it was bridged.
        let ts = relayed.ts;
        let send = |content| {
            Action::Matrix(MatrixCall::SendMessage {
                room: room_id.clone(),
                sender: ghost.clone(),
                content,
                ts,
            })
        };
        match root {
            // The root's send may be in flight ahead in the lane, or its mapping may have
            // left the hot set: the store is asked behind it, and the relay goes on as the
            // same effect, in its place in the portal's order.
            Some((parent, None)) => {
                let gitter_id = parent.clone();
                self.ask(
                    lane,
                    Action::Store(StoreCall::MappingByGitterId {
                        owner: owner.clone(),
                        room: room.clone(),
                        gitter_id: gitter_id.clone(),
                    }),
                    Then::Relay(RelayThen::FindRoot(Box::new(PendingRelay {
                        root: gitter_id,
                        send: send(content),
                        relay,
                    }))),
                );
            }
            root => {
                if let Some((_, event)) = root {
                    in_thread(&mut content, event);
                }
                let thread = content.thread.clone();
                self.ask(
                    lane.clone(),
                    send(content),
                    Then::Relay(RelayThen::ToMatrix(relay)),
                );
                // Its web images follow it, in its thread (crate::images). Behind a root
                // still looked up (above) they are left out: its link stands for each.
                self.send_images(&lane, &room_id, &ghost, &relayed.images, thread, ts);
            }
        };
    }

    /// The store answered where a Gitter thread reply's root is in one portal.
    fn on_root_found(&mut self, pending: PendingRelay, answer: Answer) {
        let PendingRelay {
            root,
            mut send,
            relay,
        } = pending;
        // The hot set first: the root's send completed while the lookup waited behind it,
        // and its mapping may not be in the store yet.
        let hot = self
            .state
            .messages
            .get(&relay.owner, &root)
            .and_then(|m| m.event_id.clone());
        let event = match hot {
            Some(event) => Some(event),
            None => self.looked_up(&answer).and_then(|m| m.event_id),
        };
        if let Action::Matrix(MatrixCall::SendMessage { content, .. }) = &mut send {
            in_thread(content, event);
        }
        self.continue_as(
            answer.id,
            answer.lane,
            send,
            Then::Relay(RelayThen::ToMatrix(relay)),
        );
    }

    /// The message's `mentions` in one portal: the owner (by their own Matrix id) and the
    /// ghosts of other Gitter users become pills and `m.mentions.user_ids`, so their client
    /// highlights and notifies; `@/all` becomes `m.mentions.room`.
    pub(crate) fn mentions_in(
        &self,
        owner: &OwnedUserId,
        message: &GitterMessage,
        content: &mut MatrixContent,
    ) {
        if message.mentions.is_empty() {
            return;
        }
        let owner_gitter = self
            .state
            .users
            .get(owner)
            .and_then(|u| u.login.as_ref())
            .map(|l| &l.gitter_id);
        let mut mentions = crate::Mentions::default();
        let mut html = content
            .formatted_body
            .clone()
            .unwrap_or_else(|| crate::format::escape(&content.body));
        for mention in &message.mentions {
            if mention.group {
                mentions.room |= mention.screen_name == "/all";
                continue;
            }
            let Some(gitter_id) = &mention.user_id else {
                continue;
            };
            let mxid = if Some(gitter_id) == owner_gitter {
                Some(owner.clone())
            } else {
                self.state.ghosts.get(gitter_id).map(|g| g.mxid.clone())
            };
            if let Some(mxid) = mxid {
                html = crate::format::pill(&html, &mention.screen_name, mxid.as_str());
                if !mentions.user_ids.contains(&mxid) {
                    mentions.user_ids.push(mxid);
                }
            }
        }
        if !mentions.user_ids.is_empty() {
            content.formatted_body = Some(html);
        }
        content.mentions = Some(mentions);
    }

    /// A relayed message reached its portal (`room` is the Gitter room, from the effect's
    /// lane): its mapping gets the event id. The mapping may have left the hot set while
    /// the send waited (an outage of the homeserver); it is written whole again then, as a
    /// mapping is only ever created for a relay with these fields.
    pub(crate) fn on_relay_answer(&mut self, then: RelayThen, answer: Answer) {
        match (then, answer.result) {
            (RelayThen::ToMatrix(relay), Ok(EffectOutput::EventSent(event_id))) => {
                if let Lane::Portal { room, .. } = answer.lane {
                    self.on_relayed(relay, room, event_id);
                }
            }
            // A relay the homeserver refused for good (the warning says why): the mapping
            // stays without its event, as for a portal that is gone.
            (RelayThen::ToMatrix(_), Err(_)) => {}
            (RelayThen::FindParent(pending), result) => {
                let answer = Answer { result, ..answer };
                self.on_parent_found(*pending, answer)
            }
            (RelayThen::FindRoot(pending), result) => {
                let answer = Answer { result, ..answer };
                self.on_root_found(*pending, answer)
            }
            (RelayThen::Image(pending), result) => {
                let answer = Answer { result, ..answer };
                self.on_image_uploaded(*pending, answer)
            }
            (RelayThen::ToGitter(origin), result) => {
                let Some(GitterCall::SendMessage { room, .. }) = answer.action.gitter_send() else {
                    return;
                };
                let room = room.clone();
                match result {
                    Ok(EffectOutput::GitterMessage(message)) => {
                        self.on_gitter_sent(room, origin, message)
                    }
                    Ok(got) => self.unexpected(answer.id, answer.name, &got),
                    Err(failure) => self.on_gitter_send_failed(room, origin, &failure),
                }
            }
            (_, Ok(got)) => self.unexpected(answer.id, answer.name, &got),
        }
    }

    fn on_relayed(&mut self, relay: RelayRef, room: GitterRoomId, event_id: OwnedEventId) {
        let record = match self.state.messages.get(&relay.owner, &relay.gitter_id) {
            Some(record) => MessageRecord {
                event_id: Some(event_id),
                ..record.clone()
            },
            None => MessageRecord {
                owner: relay.owner,
                gitter_room: room,
                gitter_id: relay.gitter_id,
                event_id: Some(event_id),
                origin: Origin::Gitter,
                at: self.step.now,
            },
        };
        self.change(Change::PutMessage(record));
    }

    /// The Matrix event a Matrix thread message or reply answers: the thread's root, or the
    /// message replied to.
    fn answered(relation: &crate::Relation) -> &OwnedEventId {
        match relation {
            crate::Relation::Thread { root } => root,
            crate::Relation::Reply { to } => to,
        }
    }

    /// The Gitter markdown of a Matrix message: its `formatted_body` converted (pills of
    /// ghosts as mentions), else its `body`.
    pub(crate) fn matrix_text(&self, body: &str, formatted: Option<&str>) -> String {
        match formatted.and_then(crate::markdown::html_to_markdown) {
            Some(markdown) => crate::markdown::resolve_pills(&markdown, |u| self.ghost_mention(u)),
            None => body.to_owned(),
        }
    }

    /// A message of the owner in their portal (a [`crate::MatrixEventKind::Message`] or
    /// [`crate::MatrixEventKind::Media`]).
    pub(crate) fn on_portal_message(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        event: &MatrixEvent,
    ) {
        let lane = Lane::Portal {
            owner: owner.clone(),
            room: room.clone(),
        };
        // What goes to Gitter: markdown, whether it is a `/me`, and what it answers.
        enum Text<'a> {
            Written {
                body: &'a str,
                formatted: Option<&'a str>,
                status: bool,
            },
            Media(&'a crate::MediaMessage),
        }
        let (text, relation) = match &event.kind {
            crate::MatrixEventKind::Message {
                msgtype,
                body,
                formatted_body,
                relation,
            } => {
                let status = match msgtype {
                    MsgType::Text | MsgType::Notice => false,
                    MsgType::Emote => true,
                    MsgType::Other(kind) => {
                        self.notice_in(
                            lane,
                            event.room_id.clone(),
                            format!("This kind of message ({kind}) is not bridged to Gitter."),
                        );
                        return;
                    }
                };
                let written = Text::Written {
                    body,
                    formatted: formatted_body.as_deref(),
                    status,
                };
                (written, relation.as_ref())
            }
            crate::MatrixEventKind::Media { media, relation } => {
                if let Some(size) = media.size.filter(|s| *s > self.config.media_max_bytes) {
                    self.notice_in(
                        lane,
                        event.room_id.clone(),
                        format!(
                            "Your file was not sent to Gitter: it is {} and the bridge \
                             shares files up to {}.",
                            crate::human_size(size),
                            crate::human_size(self.config.media_max_bytes)
                        ),
                    );
                    return;
                }
                (Text::Media(media), relation.as_ref())
            }
            _ => return,
        };
        let status = matches!(text, Text::Written { status: true, .. });
        let Some(login) = self.valid_login(owner) else {
            // No link here: a portal is not kept private the way the chat with the bot is
            // (its owner may invite others), and a link per message would push out the one
            // the person is using.
            self.notice_in(
                lane,
                event.room_id.clone(),
                "Your message was not sent to Gitter: you are not logged in. \
                 Send `login` to the bridge bot.",
            );
            return;
        };
        let body = match text {
            Text::Written {
                body, formatted, ..
            } => {
                // A reply's plain body starts with its fallback quote (spec: "Rich
                // replies"); the reply goes into the Gitter thread instead.
                let plain = match relation {
                    Some(crate::Relation::Reply { .. }) => {
                        crate::markdown::strip_reply_fallback(body)
                    }
                    _ => body,
                };
                self.matrix_text(plain, formatted)
            }
            Text::Media(media) => {
                let Some(key) = &self.config.media_key else {
                    self.notice_in(
                        lane,
                        event.room_id.clone(),
                        "Your file was not sent to Gitter: this bridge does not share files.",
                    );
                    return;
                };
                crate::media::gitter_text(media, &self.config.public_url, key)
            }
        };
        // The Gitter thread it goes into: the Gitter message of the event it answers.
        let target = relation.map(Self::answered);
        let parent = target
            .and_then(|t| self.hot_mapping_by_event(owner, room, t))
            .map(|m| m.gitter_id);
        let text = if status {
            format!("@{} {body}", login.username)
        } else {
            body
        };
        // Gitter measures `text.length` in JavaScript, i.e. UTF-16 code units (an emoji
        // outside the BMP counts 2), and refuses longer texts with 400 "Message exceeds
        // maximum size"; never cut silently.
        let len = text.encode_utf16().count();
        if len > self.config.max_message_len {
            self.notice_in(
                lane,
                event.room_id.clone(),
                format!(
                    "Your message was not sent to Gitter: it is {len} characters long and \
                     Gitter accepts at most {} (most emoji count as two).",
                    self.config.max_message_len
                ),
            );
            return;
        }
        if text.trim().is_empty() {
            return;
        }
        let after = self.newest_seen(room);
        let send = Action::Gitter {
            token: login.token,
            call: GitterCall::SendMessage {
                gitter_user: login.gitter_id,
                room: room.clone(),
                text,
                status,
                reconcile: false,
                after,
                parent: parent.clone(),
            },
        };
        let origin = SendOrigin {
            owner: owner.clone(),
            room: event.room_id.clone(),
            event_id: event.event_id.clone(),
        };
        match target {
            // An answer to a message older than the hot set: the store is asked, and the
            // send goes on as the same effect, in its place in the portal's order.
            Some(target) if parent.is_none() => self.ask(
                lane,
                Action::Store(StoreCall::MappingByEvent {
                    owner: owner.clone(),
                    room: room.clone(),
                    event_id: target.clone(),
                }),
                Then::Relay(RelayThen::FindParent(Box::new(PendingSend {
                    target: target.clone(),
                    send,
                    origin,
                }))),
            ),
            _ => self.ask(lane, send, Then::Relay(RelayThen::ToGitter(origin))),
        };
    }

    /// The store answered where a Matrix reply or thread message goes on Gitter.
    fn on_parent_found(&mut self, pending: PendingSend, answer: Answer) {
        let PendingSend {
            target,
            mut send,
            origin,
        } = pending;
        let Lane::Portal { room, .. } = &answer.lane else {
            return;
        };
        // The hot set first: a send of that very message may have completed while the
        // lookup waited behind it, before its mapping reached the store.
        let found = match self.hot_mapping_by_event(&origin.owner, room, &target) {
            Some(m) => Some(m),
            None => self.looked_up(&answer),
        };
        match found {
            Some(m) => {
                if let Action::Gitter {
                    call: GitterCall::SendMessage { parent, .. },
                    ..
                } = &mut send
                {
                    *parent = Some(m.gitter_id);
                }
            }
            None => self.warn(crate::CoreError::Ignored(format!(
                "{target}: a thread root or replied-to message the bridge never mapped to a \
                 Gitter message; the message goes to the room"
            ))),
        }
        self.continue_as(
            answer.id,
            answer.lane,
            send,
            Then::Relay(RelayThen::ToGitter(origin)),
        );
    }

    /// The mapping a store lookup returned (`None` for none, or a lookup that failed: the
    /// caller falls back, and a failure is already in the log).
    pub(crate) fn looked_up(&mut self, answer: &Answer) -> Option<MessageRecord> {
        match &answer.result {
            Ok(EffectOutput::Mapping(found)) => found.clone(),
            Ok(got) => {
                self.unexpected(answer.id, answer.name, got);
                None
            }
            Err(_) => None,
        }
    }

    fn on_gitter_sent(&mut self, room: GitterRoomId, origin: SendOrigin, message: GitterMessage) {
        self.change(Change::PutMessage(MessageRecord {
            owner: origin.owner,
            gitter_room: room.clone(),
            gitter_id: message.id,
            event_id: Some(origin.event_id),
            origin: Origin::Matrix,
            at: self.step.now,
        }));
        self.drain_held(&room);
    }

    fn on_gitter_send_failed(&mut self, room: GitterRoomId, origin: SendOrigin, failure: &Failure) {
        let why = match failure.kind {
            FailureKind::TokenRevoked => {
                // invalidate_login sends the fresh link, in the chat with the bot.
                "your Gitter login is no longer valid (the bridge bot sent you a link to log in \
                 again)"
            }
            FailureKind::Forbidden => "Gitter does not allow you to write in this room",
            FailureKind::NotFound => "Gitter no longer knows this room",
            FailureKind::RateLimited => "Gitter kept refusing because of its rate limit",
            FailureKind::Transient => "Gitter did not answer",
            FailureKind::Rejected if failure.message == GAVE_UP => {
                "Gitter kept failing on it for too long, and it is not on Gitter; send it again \
                 if you still want to"
            }
            FailureKind::Rejected => "Gitter refused the message",
        };
        self.notice_in(
            Lane::Portal {
                owner: origin.owner.clone(),
                room: room.clone(),
            },
            origin.room,
            format!("Your message was not sent to Gitter: {why}."),
        );
        self.drain_held(&room);
    }
}

/// A Gitter thread reply's content in one portal: in the Matrix thread of its root's event
/// there, or, for a root the portal never got (older than the portal, or its relay failed),
/// marked with a quote line that says it answers a thread.
fn in_thread(content: &mut MatrixContent, root: Option<OwnedEventId>) {
    match root {
        Some(root) => {
            content.thread = Some(crate::ThreadRef {
                in_reply_to: root.clone(),
                root,
            })
        }
        None => {
            content.body = format!("> In a Gitter thread\n\n{}", content.body);
            if let Some(html) = &mut content.formatted_body {
                *html = format!("<blockquote>In a Gitter thread</blockquote>{html}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::Timestamp;

    fn mapping(owner: &OwnedUserId, room: &GitterRoomId, n: u64) -> MessageRecord {
        MessageRecord {
            owner: owner.clone(),
            gitter_room: room.clone(),
            gitter_id: GitterMessageId::new(format!("{n:024x}")),
            event_id: None,
            origin: Origin::Gitter,
            at: Timestamp(n),
        }
    }

    /// Adds mappings as `Bridge::change` does, each followed by the trim.
    fn add(relay: &mut Relay, state: &mut Snapshot, m: MessageRecord, bounds: (usize, usize)) {
        assert!(state.messages.insert(m.clone()));
        relay.hot_added(state, bounds, &m);
    }

    #[test]
    fn the_queues_hold_no_more_names_than_the_bounds_allow() {
        let (mut relay, mut state) = (Relay::default(), Snapshot::default());
        let alice: OwnedUserId = "@alice:example.test".try_into().unwrap();
        let (quiet, busy) = (GitterRoomId::new("quiet"), GitterRoomId::new("busy"));
        // The quiet portal gets ten mappings, then the busy one a thousand: the overall bound
        // (five) lets the quiet ones go, and their names leave the quiet portal's queue too.
        for n in 0..10 {
            add(&mut relay, &mut state, mapping(&alice, &quiet, n), (5, 8));
        }
        assert_eq!(relay.portal_order[&(alice.clone(), quiet.clone())].len(), 5);
        for n in 10..1010 {
            add(&mut relay, &mut state, mapping(&alice, &busy, n), (5, 8));
        }
        assert_eq!(state.messages.len(), 5);
        assert!(relay.hot_order.len() <= 5);
        assert!(
            !relay.portal_order.contains_key(&(alice.clone(), quiet)),
            "the quiet portal holds nothing any more"
        );
        assert_eq!(relay.portal_order[&(alice, busy)].len(), 5);
    }

    #[test]
    fn a_portal_keeps_its_newest_within_its_own_bound() {
        let (mut relay, mut state) = (Relay::default(), Snapshot::default());
        let alice: OwnedUserId = "@alice:example.test".try_into().unwrap();
        let room = GitterRoomId::new("room");
        for n in 0..100 {
            add(&mut relay, &mut state, mapping(&alice, &room, n), (1000, 3));
        }
        let mut held: Vec<u64> = state.messages.values().map(|m| m.at.0).collect();
        held.sort();
        assert_eq!(held, [97, 98, 99]);
        assert_eq!(relay.portal_order[&(alice, room)].len(), 3);
    }
}
