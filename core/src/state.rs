//! The persistent state: records, the [`Snapshot`] the store loads, and the [`ChangeSet`]
//! each step emits.
//!
//! The core keeps its persistent state as a [`Snapshot`] in memory and changes it only
//! through [`Change`]s, which it records in the step's change set as it applies them. So a
//! snapshot built by applying every committed change set in order (what the store does) is
//! the core's state, except for the message mappings, of which the core holds a bounded hot
//! set (the store holds them all until they are pruned); [`crate::Bridge::restore`] from what
//! a store loads ([`Snapshot::hot_set`]) continues where the core left off.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use serde::{Deserialize, Serialize};

use crate::effect::Effect;
use crate::ids::{
    AsTxnId, EffectId, GitterMessageId, GitterRoomId, GitterUserId, OwnedEventId, OwnedRoomId,
    OwnedUserId, Secret, Timestamp,
};

/// A Matrix user known to the bridge.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserRecord {
    /// The Matrix user.
    pub user: OwnedUserId,
    /// The private room with the bot where commands are read.
    pub control_room: Option<OwnedRoomId>,
    /// The Gitter login.
    pub login: Option<Login>,
}

/// A Gitter login.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Login {
    /// Gitter user id.
    pub gitter_id: GitterUserId,
    /// Gitter username.
    pub username: String,
    /// The OAuth token (stored in clear by the default store; see README).
    pub token: Secret,
    /// False once Gitter answered 401: the token is not used again.
    pub valid: bool,
}

/// A ghost: the Matrix puppet of a Gitter user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GhostRecord {
    /// The Gitter user.
    pub gitter_id: GitterUserId,
    /// The ghost's Matrix id, fixed at first sight so renames keep it.
    pub mxid: OwnedUserId,
    /// The display name last applied (None until set).
    pub display_name: Option<String>,
    /// Registered on the homeserver.
    pub registered: bool,
}

/// The state of a portal.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum PortalState {
    /// The room is being created; relayed messages wait in [`Snapshot::queued`].
    Creating,
    /// The room exists and the owner has joined it.
    Active,
    /// The owner left the Matrix room or was kicked (logout, leave); the Gitter membership
    /// may remain. `invite` re-opens it.
    Closed,
    /// The room exists and the owner is invited to it but has not joined (yet). Relayed like
    /// an active portal (the owner sees the history on joining); `list` does not star it.
    /// Last, so the stored variants before it keep their numbers.
    Invited,
}

impl PortalState {
    /// The portal exists and relays: the owner is in it or invited to it.
    pub fn is_open(self) -> bool {
        matches!(self, PortalState::Active | PortalState::Invited)
    }
}

/// A portal: one Matrix room of one user for one Gitter room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PortalRecord {
    /// The Matrix user who owns the portal.
    pub owner: OwnedUserId,
    /// The Gitter room.
    pub gitter_room: GitterRoomId,
    /// The Matrix room, once created.
    pub room_id: Option<OwnedRoomId>,
    /// State.
    pub state: PortalState,
    /// Ghosts already joined (by Gitter user id).
    pub joined_ghosts: BTreeSet<GitterUserId>,
}

/// A Gitter room the bridge reads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitterRoomRecord {
    /// The room id.
    pub id: GitterRoomId,
    /// `uri` (absent for one-to-one rooms).
    pub uri: Option<String>,
    /// `name`.
    pub name: String,
    /// `topic`.
    pub topic: String,
    /// `userCount`, when known.
    pub user_count: Option<u64>,
    /// The Matrix user whose token reads the stream.
    pub reader: Option<OwnedUserId>,
}

/// Where a bridged message came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Origin {
    /// Gitter -> Matrix.
    Gitter,
    /// Matrix -> Gitter.
    Matrix,
}

/// A message mapping in a portal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MessageRecord {
    /// The portal owner.
    pub owner: OwnedUserId,
    /// The Gitter room.
    pub gitter_room: GitterRoomId,
    /// The Gitter message.
    pub gitter_id: GitterMessageId,
    /// The Matrix event, once known.
    pub event_id: Option<OwnedEventId>,
    /// Direction.
    pub origin: Origin,
    /// When the bridge recorded it (stored with it, so a retention rule can prune by age).
    pub at: Timestamp,
}

/// What [`Mappings::remove_unless`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Removal {
    /// The mapping stays; its id is given back.
    Kept(GitterMessageId),
    /// The mapping went.
    Removed,
    /// There was no such mapping.
    Absent,
}

/// Message mappings, found by portal owner and Gitter message without building a key: the
/// relay looks each message up in every portal of its room, and with one ordered map keyed
/// by (owner, message) that was a clone of both ids and a string-compared tree search per
/// portal and lookup (issue 14's profile: about 40 % of a fan-out). Two hash levels answer
/// from borrowed ids. The order of iteration is unspecified; what needs an order sorts.
/// Serialised as the list of its records, by owner and then Gitter id.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(from = "Vec<MessageRecord>", into = "Vec<MessageRecord>")]
pub struct Mappings {
    by_owner: HashMap<OwnedUserId, HashMap<GitterMessageId, MessageRecord>>,
    len: usize,
}

impl Mappings {
    /// The mapping of Gitter message `id` in `owner`'s portal of its room.
    pub fn get(&self, owner: &OwnedUserId, id: &GitterMessageId) -> Option<&MessageRecord> {
        self.by_owner.get(owner)?.get(id)
    }

    /// Whether `owner`'s portals map Gitter message `id`.
    pub fn contains(&self, owner: &OwnedUserId, id: &GitterMessageId) -> bool {
        self.get(owner, id).is_some()
    }

    /// Puts a mapping (replacing the one of the same owner and message); true when it is new.
    pub fn insert(&mut self, record: MessageRecord) -> bool {
        let of_owner = match self.by_owner.get_mut(&record.owner) {
            Some(of_owner) => of_owner,
            None => self.by_owner.entry(record.owner.clone()).or_default(),
        };
        let new = of_owner.insert(record.gitter_id.clone(), record).is_none();
        self.len += usize::from(new);
        new
    }

    /// Removes the mapping of (`owner`, `id`) unless `keep` says it stays, in one look-up
    /// of the message (the hot set's trim: usually it goes).
    pub fn remove_unless(
        &mut self,
        owner: &OwnedUserId,
        id: GitterMessageId,
        keep: impl FnOnce(&MessageRecord) -> bool,
    ) -> Removal {
        use std::collections::hash_map::Entry;
        let Some(of_owner) = self.by_owner.get_mut(owner) else {
            return Removal::Absent;
        };
        let Entry::Occupied(entry) = of_owner.entry(id) else {
            return Removal::Absent;
        };
        if keep(entry.get()) {
            return Removal::Kept(entry.key().clone());
        }
        entry.remove();
        self.len -= 1;
        if of_owner.is_empty() {
            self.by_owner.remove(owner);
        }
        Removal::Removed
    }

    /// How many mappings there are.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every mapping, in no particular order.
    pub fn values(&self) -> impl Iterator<Item = &MessageRecord> {
        self.by_owner.values().flat_map(HashMap::values)
    }

    /// The mappings of `owner`'s portals, in no particular order.
    pub fn of_owner(&self, owner: &OwnedUserId) -> impl Iterator<Item = &MessageRecord> {
        self.by_owner
            .get(owner)
            .into_iter()
            .flat_map(HashMap::values)
    }

    /// Keeps only the mappings `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&MessageRecord) -> bool) {
        self.by_owner.retain(|_, of_owner| {
            of_owner.retain(|_, m| keep(m));
            !of_owner.is_empty()
        });
        self.len = self.by_owner.values().map(HashMap::len).sum();
    }
}

impl From<Vec<MessageRecord>> for Mappings {
    fn from(records: Vec<MessageRecord>) -> Mappings {
        let mut mappings = Mappings::default();
        records.into_iter().for_each(|m| {
            mappings.insert(m);
        });
        mappings
    }
}

impl From<Mappings> for Vec<MessageRecord> {
    fn from(mappings: Mappings) -> Vec<MessageRecord> {
        let mut records: Vec<_> = mappings
            .by_owner
            .into_values()
            .flat_map(HashMap::into_values)
            .collect();
        // A stable order, so equal states serialise alike: the order of the ordered map
        // this replaced, by owner, then Gitter id.
        records.sort_by(|a, b| (&a.owner, &a.gitter_id).cmp(&(&b.owner, &b.gitter_id)));
        records
    }
}

/// A single-use token with an owner and an expiry (login links and OAuth states).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    /// The Matrix user it belongs to.
    pub user: OwnedUserId,
    /// When it stops working.
    pub expires: Timestamp,
}

/// The key of a message queued for a portal being created: (owner, Gitter room, sequence
/// number within the portal, oldest first).
pub type QueuedKey = (OwnedUserId, GitterRoomId, u64);

/// One change to the persistent state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Change {
    /// Insert or replace a user.
    PutUser(UserRecord),
    /// Insert or replace a ghost.
    PutGhost(GhostRecord),
    /// Insert or replace a portal.
    PutPortal(PortalRecord),
    /// Insert or replace a Gitter room.
    PutGitterRoom(GitterRoomRecord),
    /// Remove a Gitter room (and its cursor).
    DeleteGitterRoom(GitterRoomId),
    /// The last message of a Gitter room bridged: catch-up reads `afterId=<cursor>`. A
    /// relayed message writes this and its mappings, never the room's record.
    SetCursor(GitterRoomId, GitterMessageId),
    /// Insert or replace a message mapping (keyed by owner, Gitter room and Gitter id).
    PutMessage(MessageRecord),
    /// Queue a Gitter message for a portal being created (one row per message, so adding
    /// one costs the same however many wait).
    PutQueued(QueuedKey, crate::input::GitterMessage),
    /// Remove a queued message (delivered, or its portal closed).
    DeleteQueued(QueuedKey),
    /// Refuse future invites to this room.
    RefuseRoom(OwnedRoomId),
    /// Add a login link.
    PutLoginLink(String, Ticket),
    /// Remove a login link (used or expired).
    DeleteLoginLink(String),
    /// Add an OAuth state.
    PutOAuthState(String, Ticket),
    /// Remove an OAuth state.
    DeleteOAuthState(String),
    /// Remember a processed AS transaction id (appended; the oldest is forgotten by
    /// [`Change::ForgetTransaction`]).
    RememberTransaction(AsTxnId),
    /// Forget the oldest remembered transaction id.
    ForgetTransaction(AsTxnId),
    /// Remember a processed Matrix event id.
    RememberEvent(OwnedEventId),
    /// Forget the oldest remembered event id.
    ForgetEvent(OwnedEventId),
    /// Add an effect to the outbox.
    PutOutbox(Effect),
    /// Remove a completed effect from the outbox.
    DeleteOutbox(EffectId),
    /// The next effect id to assign.
    SetNextEffectId(EffectId),
    /// A file on the web (an avatar) is uploaded to the homeserver as `mxc`.
    PutAvatar {
        /// Its URL on the web.
        url: String,
        /// Its `mxc://` URI.
        mxc: String,
    },
    /// A ghost's avatar is (being) set from the avatar at `url`.
    SetGhostAvatar(GitterUserId, String),
    /// A portal's avatar is (being) set from its Gitter room's avatar at `url`.
    SetPortalAvatar(OwnedRoomId, String),
}

/// The changes of one step, in order. Empty when the step changed nothing.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ChangeSet {
    /// The changes.
    pub changes: Vec<Change>,
}

impl ChangeSet {
    /// Whether the step changed nothing.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

/// The whole persistent state: what the store loads and [`crate::Bridge::restore`] takes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Snapshot {
    /// users.
    pub users: BTreeMap<OwnedUserId, UserRecord>,
    /// ghosts.
    pub ghosts: BTreeMap<GitterUserId, GhostRecord>,
    /// portals, keyed by (owner, Gitter room).
    pub portals: BTreeMap<(OwnedUserId, GitterRoomId), PortalRecord>,
    /// gitter_rooms.
    pub gitter_rooms: BTreeMap<GitterRoomId, GitterRoomRecord>,
    /// The cursor of each Gitter room: its last message bridged.
    pub cursors: BTreeMap<GitterRoomId, GitterMessageId>,
    /// Message mappings, keyed by (owner, Gitter message). In a store, every mapping not
    /// yet pruned; in what a store *loads* ([`Snapshot::hot_set`]) and in the bridge, only
    /// a bounded hot set, so memory does not grow with history.
    pub messages: Mappings,
    /// Gitter messages waiting for their portal's room to exist, in order per portal.
    pub queued: BTreeMap<QueuedKey, crate::input::GitterMessage>,
    /// refused_rooms.
    pub refused_rooms: BTreeSet<OwnedRoomId>,
    /// login_links.
    pub login_links: BTreeMap<String, Ticket>,
    /// oauth_states.
    pub oauth_states: BTreeMap<String, Ticket>,
    /// Processed AS transaction ids, oldest first.
    pub transactions: VecDeque<AsTxnId>,
    /// Processed Matrix event ids, oldest first.
    pub events: VecDeque<OwnedEventId>,
    /// outbox.
    pub outbox: BTreeMap<EffectId, Effect>,
    /// meta: the next effect id.
    pub next_effect_id: u64,
    /// Avatars uploaded to the homeserver: `mxc://` URI by URL on the web, so each is
    /// uploaded once however many ghosts and portals show it.
    pub avatars: BTreeMap<String, String>,
    /// The avatar URL each ghost's avatar was set from.
    pub ghost_avatars: BTreeMap<GitterUserId, String>,
    /// The avatar URL each portal's avatar was set from.
    pub portal_avatars: BTreeMap<OwnedRoomId, String>,
}

impl Snapshot {
    /// Applies one change. This is the reference semantics every store must reproduce.
    pub fn apply(&mut self, change: &Change) {
        match change {
            Change::PutUser(u) => {
                self.users.insert(u.user.clone(), u.clone());
            }
            Change::PutGhost(g) => {
                self.ghosts.insert(g.gitter_id.clone(), g.clone());
            }
            Change::PutPortal(p) => {
                self.portals
                    .insert((p.owner.clone(), p.gitter_room.clone()), p.clone());
            }
            Change::PutGitterRoom(r) => {
                self.gitter_rooms.insert(r.id.clone(), r.clone());
            }
            Change::DeleteGitterRoom(id) => {
                self.gitter_rooms.remove(id);
                self.cursors.remove(id);
            }
            Change::SetCursor(room, id) => {
                self.cursors.insert(room.clone(), id.clone());
            }
            Change::PutMessage(m) => {
                self.messages.insert(m.clone());
            }
            Change::PutQueued(k, m) => {
                self.queued.insert(k.clone(), m.clone());
            }
            Change::DeleteQueued(k) => {
                self.queued.remove(k);
            }
            Change::RefuseRoom(r) => {
                self.refused_rooms.insert(r.clone());
            }
            Change::PutLoginLink(k, t) => {
                self.login_links.insert(k.clone(), t.clone());
            }
            Change::DeleteLoginLink(k) => {
                self.login_links.remove(k);
            }
            Change::PutOAuthState(k, t) => {
                self.oauth_states.insert(k.clone(), t.clone());
            }
            Change::DeleteOAuthState(k) => {
                self.oauth_states.remove(k);
            }
            Change::RememberTransaction(t) => self.transactions.push_back(t.clone()),
            Change::ForgetTransaction(t) => {
                if let Some(pos) = self.transactions.iter().position(|x| x == t) {
                    self.transactions.remove(pos);
                }
            }
            Change::RememberEvent(e) => self.events.push_back(e.clone()),
            Change::ForgetEvent(e) => {
                if let Some(pos) = self.events.iter().position(|x| x == e) {
                    self.events.remove(pos);
                }
            }
            Change::PutOutbox(e) => {
                self.outbox.insert(e.id, e.clone());
            }
            Change::DeleteOutbox(id) => {
                self.outbox.remove(id);
            }
            Change::SetNextEffectId(id) => self.next_effect_id = id.0,
            Change::PutAvatar { url, mxc } => {
                self.avatars.insert(url.clone(), mxc.clone());
            }
            Change::SetGhostAvatar(ghost, url) => {
                self.ghost_avatars.insert(ghost.clone(), url.clone());
            }
            Change::SetPortalAvatar(room, url) => {
                self.portal_avatars.insert(room.clone(), url.clone());
            }
        }
    }

    /// The messages queued for the portal of (owner, room), oldest first.
    pub fn queued_for<'a>(
        &'a self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
    ) -> impl DoubleEndedIterator<Item = (&'a QueuedKey, &'a crate::input::GitterMessage)> + 'a
    {
        let from = (owner.clone(), room.clone(), 0);
        let to = (owner.clone(), room.clone(), u64::MAX);
        self.queued.range(from..=to)
    }

    /// What a store loads from this state (the reference every store's `load` reproduces):
    /// everything except the message mappings, and of those only the hot set. Per portal
    /// (owner and Gitter room): every mapping after the room's cursor, which a catch-up
    /// may still deliver as an echo of the owner's own send (all of them when the room has
    /// no cursor), and the `newest` others. "After" and "newest" are Gitter's order: its
    /// ids are ObjectIds, whose hex strings sort in the order they were made (gitter-api
    /// reference §1.2), the order `afterId` reads.
    pub fn hot_set(&self, newest: usize) -> Snapshot {
        let mut by_portal: BTreeMap<(&OwnedUserId, &GitterRoomId), Vec<&MessageRecord>> =
            BTreeMap::new();
        for m in self.messages.values() {
            by_portal
                .entry((&m.owner, &m.gitter_room))
                .or_default()
                .push(m);
        }
        let mut messages = Mappings::default();
        for ((_, room), mut ms) in by_portal {
            ms.sort_by(|a, b| b.gitter_id.as_str().cmp(a.gitter_id.as_str()));
            let cursor = self.cursors.get(room);
            let after =
                |m: &MessageRecord| cursor.is_none_or(|c| m.gitter_id.as_str() > c.as_str());
            let pending = ms.iter().take_while(|m| after(m)).count();
            for m in ms.into_iter().take(pending + newest) {
                messages.insert(m.clone());
            }
        }
        Snapshot {
            messages,
            ..self.without_messages()
        }
    }

    /// This state without its message mappings (the part a bridge holds whole).
    pub fn without_messages(&self) -> Snapshot {
        Snapshot {
            users: self.users.clone(),
            ghosts: self.ghosts.clone(),
            portals: self.portals.clone(),
            gitter_rooms: self.gitter_rooms.clone(),
            cursors: self.cursors.clone(),
            messages: Mappings::default(),
            queued: self.queued.clone(),
            refused_rooms: self.refused_rooms.clone(),
            login_links: self.login_links.clone(),
            oauth_states: self.oauth_states.clone(),
            transactions: self.transactions.clone(),
            events: self.events.clone(),
            outbox: self.outbox.clone(),
            next_effect_id: self.next_effect_id,
            avatars: self.avatars.clone(),
            ghost_avatars: self.ghost_avatars.clone(),
            portal_avatars: self.portal_avatars.clone(),
        }
    }

    /// Applies every change of a change set, in order.
    pub fn apply_set(&mut self, set: &ChangeSet) {
        for c in &set.changes {
            self.apply(c);
        }
    }
}
