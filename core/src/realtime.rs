//! What Gitter's realtime API reports besides new messages (`docs/gitter-api.md` §6.4):
//! edits and deletions of messages, members who come and go or change their profile, a
//! room's new name or topic, the rooms a user joins and leaves in other Gitter clients, and
//! a revoked token. New messages come as [`crate::Input::GitterMessage`] from either
//! transport and go through the relay; these events come only over Faye.
//!
//! Edits and deletions reach every portal that has the message: its mapping is found in the
//! hot set, else in the store (a lookup on the portal's lane, so it runs after a relay of the
//! very message that may still be in flight). A message the portal owner sent from Matrix is
//! never edited in their portal (Matrix lets nobody edit another's event, and their own
//! client already shows their edit); its deletion is applied there unless the owner deleted
//! it from Matrix in this run (the echo of their own redaction).

use std::collections::{BTreeSet, HashMap};

use crate::bridge::Bridge;
use crate::dedupe::Window;
use crate::effect::{Action, Answer, Lane, MatrixCall, RealtimeThen, RoomState, StoreCall, Then};
use crate::format::gitter_to_matrix;
use crate::ids::{GitterMessageId, GitterRoomId, GitterUserId, OwnedUserId};
use crate::input::{GitterMessage, GitterRoom, GitterUser, RealtimeEvent};
use crate::state::{Change, MessageRecord, Origin, PortalState};

/// How many edited messages (and deletions from Matrix) the realtime sub-machine remembers.
const REMEMBERED: usize = 10_000;

/// How many edited messages are kept whole (they are larger than ids).
const EDITS_REMEMBERED: usize = 2_000;

/// The reason shown on a redaction made because the message was deleted on Gitter.
const DELETED_ON_GITTER: &str = "Deleted on Gitter";

/// The realtime sub-machine's state, in memory only.
#[derive(Clone, Debug)]
pub(crate) struct Realtime {
    /// The `editedAt` of the last edit applied to each message in this run: an `update`
    /// that brings the same `editedAt` again is a thread-count change (§3.10), not an edit.
    /// With it, the message as edited: a copy of the message that a catch-up page read
    /// before the edit is relayed as edited.
    edited: HashMap<GitterMessageId, (String, GitterMessage)>,
    edited_order: Window<GitterMessageId>,
    /// Messages deleted in this run: a catch-up page read before the deletion does not
    /// relay them.
    removed: Window<GitterMessageId>,
    /// Messages their portal owner deleted from Matrix in this run: Gitter's report of the
    /// deletion is that redaction's echo in their portal.
    deleted_from_matrix: Window<(OwnedUserId, GitterMessageId)>,
    /// Messages redacted in a portal in this run: a root emptied because it has replies is
    /// saved again on every new reply (and removed at last), and is redacted once.
    redacted: Window<(OwnedUserId, GitterMessageId)>,
    /// The users whose own channels are watched.
    watching: BTreeSet<OwnedUserId>,
}

impl Default for Realtime {
    fn default() -> Self {
        Realtime {
            edited: HashMap::new(),
            edited_order: Window::new(EDITS_REMEMBERED),
            removed: Window::new(REMEMBERED),
            deleted_from_matrix: Window::new(REMEMBERED),
            redacted: Window::new(REMEMBERED),
            watching: BTreeSet::new(),
        }
    }
}

impl Realtime {
    /// Whether this `editedAt` of the message is new; remembers it.
    fn new_edit(&mut self, message: &GitterMessage, edited_at: &str) -> bool {
        if self
            .edited
            .get(&message.id)
            .is_some_and(|(e, _)| e == edited_at)
        {
            return false;
        }
        for gone in self.edited_order.push(message.id.clone()) {
            self.edited.remove(&gone);
        }
        self.edited
            .insert(message.id.clone(), (edited_at.to_owned(), message.clone()));
        true
    }

    /// The latest edit of a message seen in this run, if any.
    pub(crate) fn edited_version(&self, id: &GitterMessageId) -> Option<&GitterMessage> {
        self.edited.get(id).map(|(_, m)| m)
    }

    /// Whether the message was deleted in this run.
    pub(crate) fn was_removed(&self, id: &GitterMessageId) -> bool {
        self.removed.contains(id)
    }

    /// The owner deleted this message of theirs from Matrix.
    pub(crate) fn deleted_from_matrix(&mut self, owner: &OwnedUserId, id: &GitterMessageId) {
        self.deleted_from_matrix.push((owner.clone(), id.clone()));
    }
}

impl Bridge {
    /// One realtime event.
    pub(crate) fn on_realtime(&mut self, event: RealtimeEvent) {
        match event {
            RealtimeEvent::MessageUpdated {
                room,
                message,
                edited_at,
            } => self.on_message_updated(room, message, edited_at),
            RealtimeEvent::MessageRemoved { room, id } => self.on_message_removed(&room, &id),
            RealtimeEvent::MemberJoined { room, user } => self.on_member_joined(&room, &user),
            RealtimeEvent::MemberLeft { room, user } => self.on_member_left(&room, &user),
            RealtimeEvent::MemberUpdated { room, user } => self.on_member_updated(&room, &user),
            RealtimeEvent::RoomChanged { room, name, topic } => {
                self.on_room_changed(&room, name, topic)
            }
            RealtimeEvent::RoomListed { user, room } => self.on_room_listed(&user, room),
            RealtimeEvent::RoomUnlisted { user, room } => self.on_room_unlisted(&user, &room),
            RealtimeEvent::TokenRevoked { user } => self.invalidate_login(&user),
        }
    }

    // ---------------------------------------------------------------- watching users

    /// Watches a user's own channels with their current token (replacing an earlier watch,
    /// which may have used another token).
    pub(crate) fn watch_user(&mut self, user: &OwnedUserId) {
        if !self.config.watch_users {
            return;
        }
        let Some(login) = self.valid_login(user) else {
            return;
        };
        self.realtime.watching.insert(user.clone());
        self.emit(
            Lane::Login(user.clone()),
            Action::Stream(crate::StreamCall::Watch {
                user: user.clone(),
                gitter_user: login.gitter_id,
                token: login.token,
            }),
        );
    }

    /// Stops watching a user's channels (logged out, or the token is dead).
    pub(crate) fn unwatch_user(&mut self, user: &OwnedUserId) {
        if self.realtime.watching.remove(user) {
            self.emit(
                Lane::Login(user.clone()),
                Action::Stream(crate::StreamCall::Unwatch { user: user.clone() }),
            );
        }
    }

    /// Every user is unwatched until watched again (a start).
    pub(crate) fn watch_all_users(&mut self) {
        self.realtime.watching.clear();
        let users: Vec<OwnedUserId> = self.state.users.keys().cloned().collect();
        for user in users {
            self.watch_user(&user);
        }
    }

    // ---------------------------------------------------------------- messages

    /// The portals of a room that get what happens in it now.
    fn receiving_portals(&self, room: &GitterRoomId) -> Vec<OwnedUserId> {
        self.portals
            .owners(room)
            .into_iter()
            .filter(|o| self.portal_receives(o, room))
            .collect()
    }

    fn on_message_updated(
        &mut self,
        room: GitterRoomId,
        message: GitterMessage,
        edited_at: Option<String>,
    ) {
        if !self.state.gitter_rooms.contains_key(&room) {
            return;
        }
        if message.text.is_empty() && message.html.is_empty() {
            // A thread's root "deleted" while it has replies is emptied instead (§3.9).
            self.on_message_removed(&room, &message.id);
            return;
        }
        // Never edited: a thread-count or read change (§3.10).
        let Some(edited_at) = edited_at else {
            return;
        };
        if !self.realtime.new_edit(&message, &edited_at) {
            return;
        }
        if self.streams.replace_waiting(&room, &message) {
            // Not relayed yet: it will be, as edited.
            return;
        }
        let boxed = Box::new(message.clone());
        let found = self.mappings_in_portals(&room, &message.id, |owner| RealtimeThen::Edited {
            owner: owner.clone(),
            room: room.clone(),
            message: boxed.clone(),
        });
        for (owner, mapping) in found {
            self.edit_in_portal(&owner, &room, &message, &mapping);
        }
    }

    /// The mappings of a Gitter message in the portals of its room that receive: those in
    /// the hot set now; for the others, a lookup in the store is asked (on the portal's lane,
    /// after whatever relay of the message is in flight there), answered to `then`. A portal
    /// whose room is still being created is skipped: its queued copy is relayed as it was.
    fn mappings_in_portals(
        &mut self,
        room: &GitterRoomId,
        id: &GitterMessageId,
        then: impl Fn(&OwnedUserId) -> RealtimeThen,
    ) -> Vec<(OwnedUserId, MessageRecord)> {
        let mut found = Vec::new();
        for owner in self.receiving_portals(room) {
            let hot = self
                .state
                .messages
                .get(&owner, id)
                .filter(|m| m.event_id.is_some())
                .cloned();
            if let Some(mapping) = hot {
                found.push((owner, mapping));
                continue;
            }
            if self.portal_state(&owner, room) == Some(PortalState::Creating) {
                continue;
            }
            let continuation = then(&owner);
            self.ask(
                Lane::Portal {
                    owner: owner.clone(),
                    room: room.clone(),
                },
                Action::Store(StoreCall::MappingByGitterId {
                    owner,
                    room: room.clone(),
                    gitter_id: id.clone(),
                }),
                Then::Realtime(continuation),
            );
        }
        found
    }

    fn on_message_removed(&mut self, room: &GitterRoomId, id: &GitterMessageId) {
        if !self.state.gitter_rooms.contains_key(room) {
            return;
        }
        // Not relayed yet: it never will be (a catch-up does not read deleted messages, and
        // a page read before the deletion is checked against `removed`).
        self.streams.remove_waiting(room, id);
        self.realtime.removed.push(id.clone());
        let found = self.mappings_in_portals(room, id, |owner| RealtimeThen::Removed {
            owner: owner.clone(),
            room: room.clone(),
            gitter_id: id.clone(),
        });
        for (owner, mapping) in found {
            self.redact_in_portal(&owner, room, &mapping);
        }
    }

    fn portal_state(&self, owner: &OwnedUserId, room: &GitterRoomId) -> Option<PortalState> {
        self.state
            .portals
            .get(&(owner.clone(), room.clone()))
            .map(|p| p.state)
    }

    /// The lookup of a mapping came back: the hot set first (a relay that was in flight
    /// when the event came has completed by now, and its mapping may not be in the store
    /// yet), then the store's answer.
    pub(crate) fn on_realtime_answer(&mut self, then: RealtimeThen, answer: Answer) {
        let (owner, room, id) = match &then {
            RealtimeThen::Edited {
                owner,
                room,
                message,
            } => (owner.clone(), room.clone(), message.id.clone()),
            RealtimeThen::Removed {
                owner,
                room,
                gitter_id,
            } => (owner.clone(), room.clone(), gitter_id.clone()),
        };
        let hot = self
            .state
            .messages
            .get(&owner, &id)
            .filter(|m| m.event_id.is_some())
            .cloned();
        let found = match hot {
            Some(m) => Some(m),
            None => self.looked_up(&answer),
        };
        // Never bridged into this portal (older than it, or pruned by retention): nothing
        // there to change.
        let Some(mapping) = found.filter(|m| m.event_id.is_some()) else {
            return;
        };
        if !self.portal_receives(&owner, &room) {
            return;
        }
        match then {
            RealtimeThen::Edited { message, .. } => {
                self.edit_in_portal(&owner, &room, &message, &mapping)
            }
            RealtimeThen::Removed { .. } => self.redact_in_portal(&owner, &room, &mapping),
        }
    }

    /// Replaces a relayed message's content in one portal, as its author's ghost.
    fn edit_in_portal(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        message: &GitterMessage,
        mapping: &MessageRecord,
    ) {
        if mapping.origin == Origin::Matrix {
            // The owner's own message, sent from Matrix: their edit there is this one's
            // origin, and Matrix would refuse an edit by anyone else (spec: "Event
            // replacements").
            return;
        }
        let (Some(target), Some(room_id)) =
            (mapping.event_id.clone(), self.portal_room(owner, room))
        else {
            return;
        };
        let Some(ghost) = self.ghost_in_portal(owner, room, &message.from) else {
            return;
        };
        let mut content = gitter_to_matrix(message);
        self.mentions_in(owner, message, &mut content);
        self.emit(
            Lane::Portal {
                owner: owner.clone(),
                room: room.clone(),
            },
            Action::Matrix(MatrixCall::Replace {
                room: room_id,
                sender: ghost,
                target,
                content,
            }),
        );
    }

    /// Redacts a relayed message in one portal, as the bot (the event's sender may be a
    /// ghost or the owner; the bot's power level lets it redact either).
    fn redact_in_portal(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        mapping: &MessageRecord,
    ) {
        if mapping.origin == Origin::Matrix
            && self
                .realtime
                .deleted_from_matrix
                .contains(&(owner.clone(), mapping.gitter_id.clone()))
        {
            return;
        }
        let (Some(target), Some(room_id)) =
            (mapping.event_id.clone(), self.portal_room(owner, room))
        else {
            return;
        };
        let key = (owner.clone(), mapping.gitter_id.clone());
        if self.realtime.redacted.contains(&key) {
            return;
        }
        self.realtime.redacted.push(key);
        self.emit(
            Lane::Portal {
                owner: owner.clone(),
                room: room.clone(),
            },
            Action::Matrix(MatrixCall::Redact {
                room: room_id,
                sender: self.config.bot.clone(),
                target,
                reason: Some(DELETED_ON_GITTER.to_owned()),
            }),
        );
    }

    fn portal_room(&self, owner: &OwnedUserId, room: &GitterRoomId) -> Option<ruma::OwnedRoomId> {
        self.state
            .portals
            .get(&(owner.clone(), room.clone()))
            .and_then(|p| p.room_id.clone())
    }

    // ---------------------------------------------------------------- members

    /// Someone joined: their ghost joins the portals of a small room at once (a large room's
    /// ghosts join when they first speak, as at the portal's creation).
    fn on_member_joined(&mut self, room: &GitterRoomId, user: &GitterUser) {
        let small = self
            .state
            .gitter_rooms
            .get(room)
            .and_then(|r| r.user_count)
            .is_some_and(|n| n < self.config.eager_join_threshold);
        if !small {
            return;
        }
        for owner in self.receiving_portals(room) {
            if self.portal_room(&owner, room).is_some() {
                self.ghost_in_portal(&owner, room, user);
            }
        }
    }

    /// Someone left: their ghost leaves every portal of the room it had joined.
    fn on_member_left(&mut self, room: &GitterRoomId, user: &GitterUserId) {
        let Some(ghost) = self.state.ghosts.get(user).map(|g| g.mxid.clone()) else {
            return;
        };
        for owner in self.portals.owners(room) {
            let Some(mut portal) = self
                .state
                .portals
                .get(&(owner.clone(), room.clone()))
                .cloned()
            else {
                continue;
            };
            if !portal.joined_ghosts.remove(user) {
                continue;
            }
            let room_id = portal.room_id.clone();
            self.change(Change::PutPortal(portal));
            if let Some(room_id) = room_id {
                self.emit(
                    Lane::Portal {
                        owner: owner.clone(),
                        room: room.clone(),
                    },
                    Action::Matrix(MatrixCall::Leave {
                        room: room_id,
                        user: ghost.clone(),
                    }),
                );
            }
        }
    }

    /// A member's profile changed: their ghost's display name follows (set once, as the
    /// ghost is one user in every portal).
    fn on_member_updated(&mut self, room: &GitterRoomId, user: &GitterUser) {
        self.relay.saw_username(user);
        let owner = self.receiving_portals(room).into_iter().find(|o| {
            self.state
                .portals
                .get(&(o.clone(), room.clone()))
                .is_some_and(|p| p.room_id.is_some() && p.joined_ghosts.contains(&user.id))
        });
        if let Some(owner) = owner {
            self.ghost_in_portal(&owner, room, user);
        }
    }

    // ---------------------------------------------------------------- rooms

    /// The room's name or topic changed: every open portal of it follows.
    fn on_room_changed(
        &mut self,
        room: &GitterRoomId,
        name: Option<String>,
        topic: Option<String>,
    ) {
        let Some(mut record) = self.state.gitter_rooms.get(room).cloned() else {
            return;
        };
        let mut states = Vec::new();
        // A one-to-one room (no uri) is named after the other person, which differs for
        // each of its two members: its name is never taken from a change.
        let name = name.filter(|_| record.uri.is_some());
        if let Some(name) = name.filter(|n| n != &record.name && !n.is_empty()) {
            record.name = name.clone();
            states.push(RoomState::Name(name));
        }
        if let Some(topic) = topic.filter(|t| t != &record.topic) {
            record.topic = topic.clone();
            let shown = if topic.is_empty() {
                format!("Gitter room {}", self.room_label(room))
            } else {
                topic
            };
            states.push(RoomState::Topic(shown));
        }
        if states.is_empty() {
            return;
        }
        self.change(Change::PutGitterRoom(record));
        for owner in self.portals.owners(room) {
            let Some(portal) = self.state.portals.get(&(owner.clone(), room.clone())) else {
                continue;
            };
            if portal.state == PortalState::Closed {
                continue;
            }
            let Some(room_id) = portal.room_id.clone() else {
                // Created with the record's new name and topic.
                continue;
            };
            for state in &states {
                self.emit(
                    Lane::Portal {
                        owner: owner.clone(),
                        room: room.clone(),
                    },
                    Action::Matrix(MatrixCall::SetRoomState {
                        room: room_id.clone(),
                        sender: self.config.bot.clone(),
                        state: state.clone(),
                    }),
                );
            }
        }
    }

    /// A room joined in another Gitter client, or a one-to-one someone opened: it gets a
    /// portal, and the bot says so.
    fn on_room_listed(&mut self, user: &OwnedUserId, room: GitterRoom) {
        if room.room_member == Some(false) {
            // Listed for an unread mention only (§6.4): the user is not in it.
            return;
        }
        if self.valid_login(user).is_none() || !self.config.permissions.allows(user) {
            return;
        }
        let had = self.portal_state(user, &room.id);
        if had.is_some_and(|s| s.is_open() || s == PortalState::Creating)
            || self.gitter_call_waiting(user, &room.id)
        {
            // Known already, or a `join` of the bot's own is on its way: that flow opens it.
            self.remember_room(&room);
            return;
        }
        self.open_portal(user, &room, false);
        if had.is_none() {
            let text = if room.one_to_one {
                format!(
                    "{} started a one-to-one chat with you on Gitter: you are invited to its room.",
                    room.name
                )
            } else {
                let label = room.uri.clone().unwrap_or_else(|| room.name.clone());
                format!("You joined {label} on Gitter: you are invited to its room.")
            };
            self.notice(user, text);
        }
    }

    /// A room left the user's list on Gitter: its portal closes, with a notice.
    fn on_room_unlisted(&mut self, user: &OwnedUserId, room: &GitterRoomId) {
        if self.gitter_call_waiting(user, room) {
            // A `leave` of the bot's own: that flow closes the portal and says so.
            return;
        }
        if !matches!(
            self.portal_state(user, room),
            Some(PortalState::Active | PortalState::Invited | PortalState::Creating)
        ) {
            return;
        }
        let label = self.room_label(room);
        self.close_portal(user, room, "You left this room on Gitter.");
        self.notice(
            user,
            format!("You left {label} on Gitter, so its room here is closed."),
        );
    }

    /// Whether a `join` or `leave` of `room` by `user` is in the outbox: the command's own
    /// flow will open or close the portal when it completes.
    fn gitter_call_waiting(&self, user: &OwnedUserId, room: &GitterRoomId) -> bool {
        self.state.outbox.values().any(|e| {
            e.lane == Lane::User(user.clone())
                && matches!(
                    &e.action,
                    Action::Gitter {
                        call: crate::GitterCall::JoinRoom { room: r, .. }
                            | crate::GitterCall::LeaveRoom { room: r, .. },
                        ..
                    } if r == room
                )
        })
    }
}
