//! Portals: the private Matrix room of one user for one Gitter room.
//!
//! Created by the bot (private, named after the Gitter room, topic from Gitter, the owner
//! invited, nobody else with power: the bot is the creator and keeps power to kick). Ghosts
//! join lazily before they first speak, or all at creation for rooms smaller than the eager
//! threshold. An owner who leaves keeps the Gitter membership; `invite` re-opens the portal.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use crate::bridge::Bridge;
use crate::effect::{
    Action, Answer, BridgeInfo, GitterCall, Lane, MatrixCall, NewPortal, PortalThen, Then,
};
use crate::ids::{GitterRoomId, OwnedRoomId, OwnedUserId};
use crate::input::{EffectOutput, Failure, GitterRoom, GitterUser};
use crate::state::{Change, GitterRoomRecord, PortalRecord, PortalState, Snapshot, UserRecord};

/// Localparts of the aliases portal rooms are created with (followed by 32 random hex
/// digits). The registration claims this namespace for the bridge: Synapse lets an
/// application service create aliases only inside its own alias namespaces.
pub const PORTAL_ALIAS_PREFIX: &str = "_gitter_portal_";

/// What a Matrix room is to the bridge.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum RoomRole {
    /// The control room of this user.
    Control(OwnedUserId),
    /// The portal of (owner, Gitter room).
    Portal(OwnedUserId, GitterRoomId),
}

/// The portals sub-machine's indexes over the persisted users and portals, kept by watching
/// every change to them: which Matrix room is whose control room or portal, and which owners
/// have a portal of each Gitter room.
#[derive(Clone, Debug, Default)]
pub(crate) struct Portals {
    roles: BTreeMap<OwnedRoomId, RoomRole>,
    owners: BTreeMap<GitterRoomId, BTreeSet<OwnedUserId>>,
    /// Joins seen in rooms the bridge does not know yet, newest last, at most
    /// [`EARLY_JOINS`]: an owner can take a portal's invitation before the createRoom answer
    /// reaches the bridge (a lost answer is found again by its alias only after a backoff).
    /// Not persisted: after a restart such a portal shows as invited until the owner rejoins.
    early_joins: VecDeque<(OwnedRoomId, OwnedUserId)>,
    /// The picture of each Gitter room as last listed (in memory: the next listing after a
    /// restart says it again), for portals whose room is created later.
    room_avatars: HashMap<GitterRoomId, String>,
}

/// How many early joins are remembered (a bound: any room the AS hears of could send one).
const EARLY_JOINS: usize = 256;

impl Portals {
    /// The indexes of a restored state.
    pub(crate) fn restore(state: &Snapshot) -> Portals {
        let mut portals = Portals::default();
        for u in state.users.values() {
            portals.index_user(u);
        }
        for p in state.portals.values() {
            portals.index_portal(p);
        }
        portals
    }

    /// Follows a change of a user or portal; `state` is the state before it.
    pub(crate) fn observe(&mut self, change: &Change, state: &Snapshot) {
        match change {
            Change::PutUser(u) => {
                if let Some(old) = state
                    .users
                    .get(&u.user)
                    .and_then(|o| o.control_room.as_ref())
                {
                    self.roles.remove(old);
                }
                self.index_user(u);
            }
            Change::PutPortal(p) => self.index_portal(p),
            _ => {}
        }
    }

    fn index_user(&mut self, u: &UserRecord) {
        if let Some(room) = &u.control_room {
            self.roles
                .insert(room.clone(), RoomRole::Control(u.user.clone()));
        }
    }

    fn index_portal(&mut self, p: &PortalRecord) {
        if let Some(room) = &p.room_id {
            self.roles.insert(
                room.clone(),
                RoomRole::Portal(p.owner.clone(), p.gitter_room.clone()),
            );
        }
        self.owners
            .entry(p.gitter_room.clone())
            .or_default()
            .insert(p.owner.clone());
    }

    /// What a Matrix room is to the bridge, if anything.
    pub(crate) fn role(&self, room: &OwnedRoomId) -> Option<&RoomRole> {
        self.roles.get(room)
    }

    /// `user` joined `room`, which has no role yet (it may be a portal being created).
    pub(crate) fn note_early_join(&mut self, room: OwnedRoomId, user: OwnedUserId) {
        if self.early_joins.len() >= EARLY_JOINS {
            self.early_joins.pop_front();
        }
        self.early_joins.push_back((room, user));
    }

    /// Whether `user` joined `room` before it got its role (forgotten once asked).
    pub(crate) fn take_early_join(&mut self, room: &OwnedRoomId, user: &OwnedUserId) -> bool {
        let before = self.early_joins.len();
        self.early_joins.retain(|(r, u)| !(r == room && u == user));
        self.early_joins.len() != before
    }

    /// The owners of the portals of a Gitter room (any state), in order.
    /// Remembers a Gitter room's picture as listed.
    pub(crate) fn set_room_avatar(&mut self, room: &GitterRoomId, url: String) {
        self.room_avatars.insert(room.clone(), url);
    }

    /// A Gitter room's picture as last listed.
    pub(crate) fn room_avatar(&self, room: &GitterRoomId) -> Option<&str> {
        self.room_avatars.get(room).map(String::as_str)
    }

    pub(crate) fn owners(&self, room: &GitterRoomId) -> Vec<OwnedUserId> {
        self.owners
            .get(room)
            .map(|o| o.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// Every Gitter room with a portal.
    pub(crate) fn gitter_rooms(&self) -> Vec<GitterRoomId> {
        self.owners.keys().cloned().collect()
    }
}

impl Bridge {
    /// Records (or refreshes) what we know of a Gitter room, keeping its cursor and reader.
    pub(crate) fn remember_room(&mut self, room: &GitterRoom) {
        self.note_room_avatar(room);
        let existing = self.state.gitter_rooms.get(&room.id).cloned();
        let record = match existing {
            Some(mut r) => {
                if r.uri == room.uri
                    && r.name == room.name
                    && r.topic == room.topic
                    && r.user_count == room.user_count
                {
                    return;
                }
                r.uri = room.uri.clone();
                r.name = room.name.clone();
                r.topic = room.topic.clone();
                r.user_count = room.user_count;
                r
            }
            None => GitterRoomRecord {
                id: room.id.clone(),
                uri: room.uri.clone(),
                name: room.name.clone(),
                topic: room.topic.clone(),
                user_count: room.user_count,
                reader: None,
            },
        };
        self.change(Change::PutGitterRoom(record));
    }

    /// Opens the portal of `owner` for `room`: creates it, re-invites the owner to a closed
    /// one, or (when `reinvite`) invites the owner again to an open one.
    pub(crate) fn open_portal(&mut self, owner: &OwnedUserId, room: &GitterRoom, reinvite: bool) {
        self.remember_room(room);
        let key = (owner.clone(), room.id.clone());
        let lane = Lane::Portal {
            owner: owner.clone(),
            room: room.id.clone(),
        };
        let label = room.uri.clone().unwrap_or_else(|| room.name.clone());
        match self.state.portals.get(&key).cloned() {
            Some(mut portal) if portal.room_id.is_some() => {
                let was = portal.state;
                if was.is_open() && !reinvite {
                    return;
                }
                let room_id = portal.room_id.clone().expect("checked above");
                // An owner still in the room stays joined; anyone else is invited now.
                if was != PortalState::Active {
                    portal.state = PortalState::Invited;
                }
                self.change(Change::PutPortal(portal));
                self.emit(
                    lane,
                    Action::Matrix(MatrixCall::Invite {
                        room: room_id,
                        sender: self.config.bot.clone(),
                        target: owner.clone(),
                    }),
                );
                self.notice(owner, format!("Invited you to the room of {label}."));
            }
            Some(portal) if portal.state == PortalState::Creating => {}
            _ => {
                let portal = PortalRecord {
                    owner: owner.clone(),
                    gitter_room: room.id.clone(),
                    room_id: None,
                    state: PortalState::Creating,
                    joined_ghosts: BTreeSet::new(),
                };
                self.change(Change::PutPortal(portal));
                let alias = format!("{PORTAL_ALIAS_PREFIX}{}", self.random_token());
                let topic = if room.topic.is_empty() {
                    format!("Gitter room {label}")
                } else {
                    room.topic.clone()
                };
                // Its history is read first, in the same lane (crate::history).
                self.ask_history(owner, &room.id, &lane);
                let bridge = BridgeInfo {
                    bot: self.config.bot.clone(),
                    room_id: room.id.clone(),
                    room_name: label,
                    web_url: self.config.gitter_web_url.clone(),
                    room_uri: room.uri.clone(),
                };
                self.ask(
                    lane,
                    Action::Matrix(MatrixCall::CreatePortal(Box::new(NewPortal {
                        creator: self.config.bot.clone(),
                        name: room.name.clone(),
                        topic,
                        invite: vec![owner.clone()],
                        // Room version 12: the creator has implicit top power and must not be
                        // listed; the owner gets no extra power, so the bot can kick.
                        power_users: BTreeMap::new(),
                        alias: alias.clone(),
                        is_direct: room.one_to_one,
                        bridge: Some(bridge),
                    }))),
                    Then::Portal(PortalThen::Created {
                        owner: owner.clone(),
                        room: room.id.clone(),
                        alias,
                    }),
                );
            }
        }
        self.ensure_reader(&room.id);
    }

    /// Closes a portal: the bot kicks the owner (with `reason`) and stops relaying into it.
    pub(crate) fn close_portal(&mut self, owner: &OwnedUserId, room: &GitterRoomId, reason: &str) {
        let key = (owner.clone(), room.clone());
        let Some(mut portal) = self.state.portals.get(&key).cloned() else {
            return;
        };
        if portal.state != PortalState::Closed {
            if let Some(room_id) = portal.room_id.clone() {
                self.emit(
                    Lane::Portal {
                        owner: owner.clone(),
                        room: room.clone(),
                    },
                    Action::Matrix(MatrixCall::Kick {
                        room: room_id,
                        sender: self.config.bot.clone(),
                        target: owner.clone(),
                        reason: reason.to_owned(),
                    }),
                );
            }
            portal.state = PortalState::Closed;
            self.change(Change::PutPortal(portal));
            self.drop_queued(owner, room);
        }
        self.ensure_reader(room);
    }

    /// Queues a Gitter message for the portal of (owner, room) while its room is created,
    /// and maps it there without an event, so no second delivery queues it again.
    pub(crate) fn queue_mapped(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        message: &crate::GitterMessage,
    ) {
        self.queue_for_portal(owner, room, message);
        self.change(Change::PutMessage(crate::MessageRecord {
            owner: owner.clone(),
            gitter_room: room.clone(),
            gitter_id: message.id.clone(),
            event_id: None,
            origin: crate::Origin::Gitter,
            at: self.step.now,
        }));
    }

    /// Queues a Gitter message for the portal of (owner, room) while its room is created.
    pub(crate) fn queue_for_portal(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        message: &crate::GitterMessage,
    ) {
        let seq = self
            .state
            .queued_for(owner, room)
            .next_back()
            .map_or(0, |((_, _, seq), _)| seq + 1);
        self.change(Change::PutQueued(
            (owner.clone(), room.clone(), seq),
            message.clone(),
        ));
    }

    /// Takes the messages queued for a portal, oldest first, removing their rows.
    pub(crate) fn take_queued(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
    ) -> Vec<crate::GitterMessage> {
        let queued: Vec<_> = self
            .state
            .queued_for(owner, room)
            .map(|(k, m)| (k.clone(), m.clone()))
            .collect();
        queued
            .into_iter()
            .map(|(k, m)| {
                self.change(Change::DeleteQueued(k));
                m
            })
            .collect()
    }

    /// Forgets what was queued for a portal that will not be created (closed, failed).
    pub(crate) fn drop_queued(&mut self, owner: &OwnedUserId, room: &GitterRoomId) {
        self.take_queued(owner, room);
    }

    pub(crate) fn on_portal_answer(&mut self, then: PortalThen, answer: Answer) {
        match (then, answer.result) {
            (PortalThen::Created { owner, room, alias }, Ok(EffectOutput::RoomCreated(id))) => {
                self.on_room_created(owner, room, &alias, id)
            }
            (PortalThen::Created { owner, room, .. }, Err(failure)) => {
                self.on_room_create_failed(owner, room, &failure)
            }
            (PortalThen::Members { owner, room }, Ok(EffectOutput::GitterUsers(users))) => {
                self.on_gitter_members(&owner, &room, users)
            }
            // Eager ghost joins are a nicety: the ghosts join as they speak.
            (PortalThen::Members { .. }, Err(_)) => {}
            (PortalThen::Avatar { room, url }, result) => {
                let answer = Answer { result, ..answer };
                self.on_room_avatar_uploaded(room, url, answer)
            }
            (PortalThen::History { owner, room }, result) => {
                let answer = Answer { result, ..answer };
                self.on_history(owner, room, answer)
            }
            (_, Ok(got)) => self.unexpected(answer.id, answer.name, &got),
        }
    }

    fn on_room_created(
        &mut self,
        owner: OwnedUserId,
        room: GitterRoomId,
        alias: &str,
        room_id: OwnedRoomId,
    ) {
        let key = (owner.clone(), room.clone());
        let lane = Lane::Portal {
            owner: owner.clone(),
            room: room.clone(),
        };
        // The alias only made the creation idempotent; now that the room is recorded it has
        // done its work, and nobody should find the private room by it.
        let alias = format!("#{alias}:{}", self.config.server_name);
        self.emit(lane, Action::Matrix(MatrixCall::DeleteAlias { alias }));
        let Some(mut portal) = self.state.portals.get(&key).cloned() else {
            return;
        };
        let queued = self.take_queued(&owner, &room);
        let closed = portal.state == PortalState::Closed;
        portal.room_id = Some(room_id.clone());
        if !closed {
            // createRoom invited the owner; the owner's join makes it Active (it may have
            // come already, before this answer).
            portal.state = if self.portals.take_early_join(&room_id, &owner) {
                PortalState::Active
            } else {
                PortalState::Invited
            };
        }
        self.change(Change::PutPortal(portal));
        if closed {
            // Closed while being created (logout, leave): the owner is invited but should
            // not stay.
            self.emit(
                Lane::Portal {
                    owner: owner.clone(),
                    room: room.clone(),
                },
                Action::Matrix(MatrixCall::Kick {
                    room: room_id,
                    sender: self.config.bot.clone(),
                    target: owner,
                    reason: "This room was closed.".to_owned(),
                }),
            );
            return;
        }
        self.room_avatar_on_creation(&room, room_id.clone());
        let small = self
            .state
            .gitter_rooms
            .get(&room)
            .and_then(|r| r.user_count)
            .is_some_and(|n| n < self.config.eager_join_threshold);
        if small && let Some(login) = self.valid_login(&owner) {
            self.ask(
                Lane::Portal {
                    owner: owner.clone(),
                    room: room.clone(),
                },
                Action::Gitter {
                    token: login.token,
                    call: GitterCall::RoomMembers { room: room.clone() },
                },
                Then::Portal(PortalThen::Members {
                    owner: owner.clone(),
                    room: room.clone(),
                }),
            );
        }
        for message in queued {
            let relayed = crate::format::relayed(&message);
            self.deliver(&owner, &room, &message, &relayed);
        }
    }

    fn on_room_create_failed(&mut self, owner: OwnedUserId, room: GitterRoomId, failure: &Failure) {
        let key = (owner.clone(), room.clone());
        if let Some(mut portal) = self.state.portals.get(&key).cloned() {
            portal.state = PortalState::Closed;
            self.change(Change::PutPortal(portal));
        }
        self.drop_queued(&owner, &room);
        let label = self.room_label(&room);
        self.notice(
            &owner,
            format!(
                "Could not create the Matrix room for {label} ({:?}). Send `invite {label}` to try again.",
                failure.kind
            ),
        );
        self.ensure_reader(&room);
    }

    fn on_gitter_members(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        users: Vec<GitterUser>,
    ) {
        if !self.portal_receives(owner, room) {
            return;
        }
        for user in users {
            self.ghost_in_portal(owner, room, &user);
        }
    }
}
