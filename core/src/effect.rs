//! What the core asks the drivers to do: [`Effect`].
//!
//! Every effect has a stable [`EffectId`] and is written to the outbox in the change set of
//! the step that emitted it; the driver executes it after the commit and reports the result
//! as [`crate::Input::EffectDone`]. Effects of one [`Lane`] must run one after the other, in
//! the order emitted (a ghost is registered before it joins, and joins before it speaks);
//! effects of different lanes may run concurrently.
//!
//! An [`Action`] is typed by where it goes: the homeserver ([`MatrixCall`]), Gitter's OAuth
//! server, Gitter's REST API with one token ([`GitterCall`]), a Gitter room's stream
//! ([`StreamCall`]) or the bridge's own store ([`StoreCall`]). Drivers read only the action.
//! What the core does with the answer travels beside it as [`Then`]: the continuation of the
//! part of the core that asked, persisted with the effect in the outbox and handed back to
//! that part with the result. Drivers carry it untouched and never read it.
//!
//! Adding a Gitter call means a [`GitterCall`] variant, its arm in the Gitter adapter, and the
//! continuation of whoever asks for it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{
    EffectId, GitterMessageId, GitterRoomId, GitterUserId, OwnedRoomId, OwnedUserId, RequestId,
    Secret, Timestamp,
};

/// One effect to execute.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Effect {
    /// Stable id; the result comes back with it.
    pub id: EffectId,
    /// Ordering lane.
    pub lane: Lane,
    /// What to do.
    pub action: Action,
    /// What the core does with the answer (drivers never read it).
    pub then: Then,
}

/// Ordering lanes. The driver keeps effects of one lane in order.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Lane {
    /// The portal of `owner` for a Gitter room.
    Portal {
        /// The Matrix user who owns the portal.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
    },
    /// A Matrix user's control room and account (commands, login, notices).
    User(OwnedUserId),
    /// A Gitter room's stream and catch-up reads.
    Stream(GitterRoomId),
    /// Notices to a user about work that waits in another lane (a message or a command
    /// retrying through an outage): they must not wait behind the very effect they are about.
    Notices(OwnedUserId),
    /// The steps of a user's login: a browser waits for them, so they never queue behind a
    /// command that waits out an outage.
    Login(OwnedUserId),
    /// The store's own work (pruning, lookups): it neither waits behind nor holds anyone's
    /// work. (Variants are only ever added at the end: postcard stores the index.)
    Store,
    /// A ghost's profile picture: an avatar's download never holds a portal's messages.
    Ghost(OwnedUserId),
    /// A portal's picture (`m.room.avatar`), apart from its messages for the same reason.
    RoomAvatar(OwnedRoomId),
}

/// What to do, by destination. Matrix calls are made with the as_token, as their `sender`
/// (masquerading with `user_id` when it is a ghost); Gitter calls with their one token.
/// (Variants of these enums are only ever added at the end: postcard stores the index.)
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    /// A call to the homeserver's client-server API.
    Matrix(MatrixCall),
    /// Exchange an OAuth code at Gitter's token endpoint. Returns
    /// [`crate::EffectOutput::Token`].
    OAuth {
        /// The code from the callback (single-use).
        code: Secret,
    },
    /// A call to Gitter's REST API with a user's token.
    Gitter {
        /// The token the call is made with (the only place it is kept).
        token: Secret,
        /// The call.
        call: GitterCall,
    },
    /// Control of a Gitter room's stream.
    Stream(StreamCall),
    /// Work on the bridge's own store.
    Store(StoreCall),
}

/// Calls to the homeserver.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MatrixCall {
    /// Register a ghost (`m.login.application_service`, `inhibit_login`); `M_USER_IN_USE` is
    /// success.
    RegisterGhost {
        /// The ghost's full user id.
        user: OwnedUserId,
    },
    /// Set a user's display name.
    SetDisplayName {
        /// The ghost.
        user: OwnedUserId,
        /// The new display name.
        name: String,
    },
    /// Create a private room as `creator` and invite users. Returns
    /// [`crate::EffectOutput::RoomCreated`]. The form of effects stored before
    /// [`MatrixCall::CreatePortal`]: still run (as a portal with no bridge info), never emitted.
    CreateRoom {
        /// The creator (the bot). Never listed in `power_users`: room version 12 gives
        /// creators implicit top power and Synapse refuses to create the room otherwise.
        creator: OwnedUserId,
        /// Room name.
        name: String,
        /// Room topic.
        topic: String,
        /// Users to invite.
        invite: Vec<OwnedUserId>,
        /// Extra power levels (never the creator).
        power_users: BTreeMap<OwnedUserId, i64>,
        /// Localpart of a room alias created with the room (`room_alias_name`), drawn at
        /// random when the effect is emitted and kept in the outbox with it. It makes the
        /// creation idempotent: createRoom has no transaction id, so when its answer is lost
        /// the retry's `M_ROOM_IN_USE` says the room exists and the alias names it, instead
        /// of a second portal room (the adapter resolves it). The core deletes the alias once
        /// the room is recorded ([`MatrixCall::DeleteAlias`]).
        alias: String,
    },
    /// Invite `target` to `room`, as `sender`.
    Invite {
        /// Room.
        room: OwnedRoomId,
        /// Who invites.
        sender: OwnedUserId,
        /// Who is invited.
        target: OwnedUserId,
    },
    /// `user` joins `room`.
    Join {
        /// Room.
        room: OwnedRoomId,
        /// Who joins.
        user: OwnedUserId,
    },
    /// `user` leaves `room`.
    Leave {
        /// Room.
        room: OwnedRoomId,
        /// Who leaves.
        user: OwnedUserId,
    },
    /// `sender` kicks `target` from `room`.
    Kick {
        /// Room.
        room: OwnedRoomId,
        /// Who kicks.
        sender: OwnedUserId,
        /// Who is kicked.
        target: OwnedUserId,
        /// Shown to the user.
        reason: String,
    },
    /// Send an `m.room.message` as `sender`, with the transaction id
    /// [`EffectId::matrix_txn_id`]. Returns [`crate::EffectOutput::EventSent`].
    SendMessage {
        /// Room.
        room: OwnedRoomId,
        /// Who sends (the bot or a ghost).
        sender: OwnedUserId,
        /// The content.
        content: MatrixContent,
        /// `origin_server_ts` to ask for (timestamp massaging), ms.
        ts: Option<Timestamp>,
    },
    /// Delete a room alias (`DELETE /directory/room/{alias}`) as the bot; an alias already
    /// gone is success.
    DeleteAlias {
        /// The full alias, `#localpart:server`.
        alias: String,
    },
    /// List the room's joined and invited members. Returns
    /// [`crate::EffectOutput::MatrixMembers`].
    RoomMembers {
        /// Room.
        room: OwnedRoomId,
    },
    /// Replace the content of an earlier message (`m.replace`, spec: "Event replacements"),
    /// as `sender`, who must be the original's sender. Returns
    /// [`crate::EffectOutput::EventSent`].
    Replace {
        /// Room.
        room: OwnedRoomId,
        /// Who sent the original (a ghost).
        sender: OwnedUserId,
        /// The event replaced.
        target: ruma::OwnedEventId,
        /// The new content (`m.new_content`; its thread, if any, is not repeated).
        content: MatrixContent,
    },
    /// Redact an event as `sender` (the bot, whose power level allows it). Returns
    /// [`crate::EffectOutput::EventSent`].
    Redact {
        /// Room.
        room: OwnedRoomId,
        /// Who redacts.
        sender: OwnedUserId,
        /// The event redacted.
        target: ruma::OwnedEventId,
        /// Shown to the room's members.
        reason: Option<String>,
    },
    /// Set a portal's name or topic, as `sender` (the bot).
    SetRoomState {
        /// Room.
        room: OwnedRoomId,
        /// Who sets it.
        sender: OwnedUserId,
        /// The state event.
        state: RoomState,
    },
    /// Leave `room` as `user`, saying why (`reason` in the leave event: clients show it).
    LeaveWithReason {
        /// Room.
        room: OwnedRoomId,
        /// Who leaves.
        user: OwnedUserId,
        /// Why.
        reason: String,
    },
    /// Create a portal room. Returns [`crate::EffectOutput::RoomCreated`]. Boxed: it is the
    /// largest call by far, every effect is as large as the largest, and a fan-out's step
    /// moves hundreds of effects (and their outbox changes) through its vectors; a box
    /// serialises as what it holds, so stored outbox rows read the same.
    CreatePortal(Box<NewPortal>),
    /// Download a file from the web (an image in a Gitter message) and upload it to the
    /// homeserver's content repository as the bot. Returns
    /// [`crate::EffectOutput::Uploaded`]. The adapter bounds the download (http/https only,
    /// a size cap, a time limit, no private addresses unless configured) and reports a
    /// download that fails for good as [`crate::FailureKind::Rejected`]: the message's link
    /// stands in for it. Only the upload's failures can be transient.
    MirrorMedia {
        /// The file's `http(s)` URL.
        url: String,
        /// The file name given to the upload.
        name: String,
    },
    /// Send an `m.image` as `sender`, with the transaction id [`EffectId::matrix_txn_id`].
    /// Returns [`crate::EffectOutput::EventSent`].
    SendImage {
        /// Room.
        room: OwnedRoomId,
        /// Who sends (a ghost).
        sender: OwnedUserId,
        /// The image.
        image: ImageMessage,
        /// `origin_server_ts` to ask for, ms.
        ts: Option<Timestamp>,
    },
    /// Set a user's avatar (`PUT /profile/{userId}/avatar_url`).
    SetAvatar {
        /// The ghost.
        user: OwnedUserId,
        /// The `mxc://` URI of the picture.
        mxc: String,
    },
}

/// An `m.image` (spec: "m.image"): an uploaded file and what a client shows of it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageMessage {
    /// `body`: the image's name (its alt text on Gitter).
    pub name: String,
    /// `url`: the `mxc://` URI of the upload.
    pub mxc: String,
    /// `info.mimetype`, when known.
    pub mimetype: Option<String>,
    /// `info.size`, bytes, when known.
    pub size: Option<u64>,
    /// The thread the image is in, when any.
    pub thread: Option<ThreadRef>,
}

/// A file the adapter uploaded ([`MatrixCall::MirrorMedia`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Uploaded {
    /// Its `mxc://` URI.
    pub mxc: String,
    /// Its content type, as the web server gave it.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A portal room to create: private (`preset: private_chat`), unencrypted (the bridge
/// cannot read encrypted events, docs/matrix.md), as `creator`, inviting its owner.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewPortal {
    /// The creator (the bot). Never listed in `power_users`: room version 12 gives
    /// creators implicit top power and Synapse refuses to create the room otherwise.
    pub creator: OwnedUserId,
    /// Room name.
    pub name: String,
    /// Room topic.
    pub topic: String,
    /// Users to invite.
    pub invite: Vec<OwnedUserId>,
    /// Extra power levels (never the creator).
    pub power_users: BTreeMap<OwnedUserId, i64>,
    /// Localpart of a room alias created with the room: makes the creation idempotent (see
    /// [`MatrixCall::CreateRoom`]'s `alias`).
    pub alias: String,
    /// A one-to-one Gitter chat: the invitation is marked `is_direct`, so clients list the
    /// room with the owner's direct chats.
    pub is_direct: bool,
    /// What the room bridges, for `m.bridge` state (MSC2346, and its older name
    /// `uk.half-shot.bridge`) in the initial state: clients show the network and the room.
    /// Always set by the core; `None` only for a [`MatrixCall::CreateRoom`] stored before.
    pub bridge: Option<BridgeInfo>,
}

/// What a portal bridges (MSC2346 `m.bridge`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BridgeInfo {
    /// The bridge's bot (`bridgebot`).
    pub bot: OwnedUserId,
    /// The Gitter room's id (`channel.id`; the state key is made from it).
    pub room_id: GitterRoomId,
    /// The Gitter room's name as people know it (its uri, or a one-to-one's name).
    pub room_name: String,
    /// Gitter's web address (`protocol.external_url`); the room's is this plus its uri.
    pub web_url: String,
    /// The room's uri on Gitter, when it has one (`channel.external_url`).
    pub room_uri: Option<String>,
}

/// A state event of a portal the bridge keeps in step with its Gitter room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoomState {
    /// `m.room.name`.
    Name(String),
    /// `m.room.topic`.
    Topic(String),
    /// `m.room.avatar`: the `mxc://` URI of the picture.
    Avatar(String),
}

/// Calls to Gitter's REST API (`docs/gitter-api.md` §3), each made with the token of its
/// [`Action::Gitter`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GitterCall {
    /// `GET /v1/user/me`. Returns [`crate::EffectOutput::GitterUser`].
    CurrentUser,
    /// `GET /v1/user/:id/rooms`. Returns [`crate::EffectOutput::GitterRooms`].
    ListRooms,
    /// `POST /v1/rooms {uri}`. Returns [`crate::EffectOutput::GitterRoom`].
    ResolveRoom {
        /// The uri typed by the user.
        uri: String,
    },
    /// `POST /v1/user/:id/rooms {id}`. Returns [`crate::EffectOutput::GitterRoom`].
    JoinRoom {
        /// The user's Gitter id.
        gitter_user: GitterUserId,
        /// The room.
        room: GitterRoomId,
    },
    /// `DELETE /v1/rooms/:rid/users/:uid`.
    LeaveRoom {
        /// The user's Gitter id.
        gitter_user: GitterUserId,
        /// The room.
        room: GitterRoomId,
    },
    /// `GET /v1/rooms/:rid/users` (all pages). Returns [`crate::EffectOutput::GitterUsers`].
    RoomMembers {
        /// The room.
        room: GitterRoomId,
    },
    /// `GET /v1/rooms/:rid/chatMessages?afterId=&limit=`. Without `after`, the newest `limit`
    /// messages. Returns [`crate::EffectOutput::GitterMessages`], oldest first.
    FetchMessages {
        /// The room.
        room: GitterRoomId,
        /// Cursor.
        after: Option<GitterMessageId>,
        /// Page size (at most 100).
        limit: u32,
    },
    /// `POST /v1/rooms/:rid/chatMessages`. Returns [`crate::EffectOutput::GitterMessage`].
    ///
    /// With `reconcile` set the adapter posts nothing: it reads the room's messages after
    /// `after` (the newest page when `after` is `None`) and returns the author's as
    /// [`crate::EffectOutput::Reconciled`], oldest first; a read that cannot reach the end
    /// of the room in its page budget is a transient failure, never a partial answer. A Gitter POST has no
    /// idempotency key, so a send whose outcome is unknown (a lost answer, a time-out, a 5xx,
    /// a crash) is reconciled this way before any new attempt; the core decides whether one
    /// of them is this send, and only if none is does it post again.
    SendMessage {
        /// The author's Gitter id.
        gitter_user: GitterUserId,
        /// The room.
        room: GitterRoomId,
        /// Markdown text.
        text: String,
        /// A `/me` message.
        status: bool,
        /// Read instead of posting (see above).
        reconcile: bool,
        /// The room's cursor when the Matrix event was received: this send can only be
        /// among the messages after it. Gitter ids are compared by Gitter's order, never our
        /// clock with Gitter's.
        after: Option<GitterMessageId>,
        /// Posted in the thread of this message (`parentId`, §3.7), when set.
        parent: Option<GitterMessageId>,
    },
    /// `PUT /v1/rooms/:rid/chatMessages/:id {text}` (§3.8: the author only, within 10
    /// minutes of `sent`; later a 400). Idempotent.
    EditMessage {
        /// The room.
        room: GitterRoomId,
        /// The message.
        id: GitterMessageId,
        /// The new markdown text.
        text: String,
    },
    /// `DELETE /v1/rooms/:rid/chatMessages/:id`, 204 (§3.9; a message with thread replies is
    /// emptied instead). Idempotent.
    DeleteMessage {
        /// The room.
        room: GitterRoomId,
        /// The message.
        id: GitterMessageId,
    },
}

/// Control of a Gitter room's stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamCall {
    /// Open (or replace) the room's stream with this token. The adapter reports
    /// [`crate::Input::StreamConnected`], messages and disconnects, and reconnects by itself
    /// with backoff except after a revoked token.
    Open {
        /// The room.
        room: GitterRoomId,
        /// The reader's token.
        token: Secret,
    },
    /// Close the room's stream.
    Close {
        /// The room.
        room: GitterRoomId,
    },
    /// Watch a logged-in user's own realtime channels with their token: their room list and
    /// their token's revocation (`docs/gitter-api.md` §6.3). The adapter reports what they
    /// carry as [`crate::Input::Realtime`]; with per-room HTTP streams only (no realtime
    /// server configured) there is nothing to watch and it does nothing.
    Watch {
        /// The Matrix user.
        user: OwnedUserId,
        /// Their Gitter id (the channels are named by it).
        gitter_user: GitterUserId,
        /// Their token.
        token: Secret,
    },
    /// Stop watching a user's channels.
    Unwatch {
        /// The Matrix user.
        user: OwnedUserId,
    },
}

/// Work on the bridge's own store, which holds more than the core keeps in memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StoreCall {
    /// Delete the message mappings recorded before `older_than` from the store, visiting at
    /// most `batch` rows from `resume` (where the previous batch stopped; `None` starts at the
    /// beginning). Returns [`crate::EffectOutput::Pruned`]. The store holds every mapping
    /// and the core only its hot set, so only the store can find the old ones.
    PruneMappings {
        /// The retention cut: mappings with an earlier `at` go.
        older_than: Timestamp,
        /// Where to go on.
        resume: Option<Vec<u8>>,
        /// Rows to visit at most (a bound on the time one batch holds the store).
        batch: u32,
    },
    /// Look up the mapping of one Gitter message in a portal, in the store (the core holds
    /// only its hot set). Returns [`crate::EffectOutput::Mapping`].
    MappingByGitterId {
        /// The portal owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
        /// The Gitter message.
        gitter_id: GitterMessageId,
    },
    /// Look up the mapping of one Matrix event in a portal, in the store. Returns
    /// [`crate::EffectOutput::Mapping`].
    MappingByEvent {
        /// The portal owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
        /// The Matrix event.
        event_id: ruma::OwnedEventId,
    },
}

impl Action {
    /// Whether a transient failure of this action keeps it in the outbox to be tried again
    /// later, with no limit on the count (an outage of hours heals by itself). Everything
    /// whose loss loses a message or a user's action is durable. Not durable: the steps of
    /// a login, whose browser waits for the answer (an OAuth code is single-use, and the
    /// page times out: the person is told and starts again), catch-up reads (the stream
    /// state machine retries them from the cursor on its own timer), stream control and
    /// the store's work (pruning's timer starts it again; a lookup's asker decides).
    pub fn is_durable(&self) -> bool {
        match self {
            Action::Matrix(_) => true,
            Action::OAuth { .. } | Action::Stream(_) | Action::Store(_) => false,
            Action::Gitter { call, .. } => !matches!(
                call,
                GitterCall::CurrentUser | GitterCall::FetchMessages { .. }
            ),
        }
    }

    /// The Gitter token the action is made with, if any (a revoked token invalidates the
    /// login it belongs to).
    pub fn gitter_token(&self) -> Option<&Secret> {
        match self {
            Action::Gitter { token, .. }
            | Action::Stream(StreamCall::Open { token, .. } | StreamCall::Watch { token, .. }) => {
                Some(token)
            }
            _ => None,
        }
    }

    /// The secret the action carries (a token or an OAuth code), which an adapter scrubs
    /// from any failure text it reports.
    pub fn secret(&self) -> Option<&Secret> {
        match self {
            Action::OAuth { code } => Some(code),
            other => other.gitter_token(),
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Matrix(call) => match call {
                MatrixCall::RegisterGhost { .. } => "register_ghost",
                MatrixCall::SetDisplayName { .. } => "set_display_name",
                MatrixCall::CreateRoom { .. } | MatrixCall::CreatePortal(_) => "create_room",
                MatrixCall::Invite { .. } => "invite",
                MatrixCall::Join { .. } => "join",
                MatrixCall::Leave { .. } | MatrixCall::LeaveWithReason { .. } => "leave",
                MatrixCall::Kick { .. } => "kick",
                MatrixCall::SendMessage { .. } => "send_matrix",
                MatrixCall::MirrorMedia { .. } => "mirror_media",
                MatrixCall::SendImage { .. } => "send_image",
                MatrixCall::SetAvatar { .. } => "set_avatar",
                MatrixCall::DeleteAlias { .. } => "delete_alias",
                MatrixCall::RoomMembers { .. } => "room_members",
                MatrixCall::Replace { .. } => "replace_matrix",
                MatrixCall::Redact { .. } => "redact_matrix",
                MatrixCall::SetRoomState { .. } => "set_room_state",
            },
            Action::OAuth { .. } => "exchange_code",
            Action::Gitter { call, .. } => match call {
                GitterCall::CurrentUser => "get_gitter_user",
                GitterCall::ListRooms => "list_rooms",
                GitterCall::ResolveRoom { .. } => "resolve_room",
                GitterCall::JoinRoom { .. } => "join_gitter_room",
                GitterCall::LeaveRoom { .. } => "leave_gitter_room",
                GitterCall::RoomMembers { .. } => "gitter_room_members",
                GitterCall::FetchMessages { .. } => "fetch_messages",
                GitterCall::SendMessage { .. } => "send_gitter",
                GitterCall::EditMessage { .. } => "edit_gitter",
                GitterCall::DeleteMessage { .. } => "delete_gitter",
            },
            Action::Stream(StreamCall::Open { .. }) => "open_stream",
            Action::Stream(StreamCall::Close { .. }) => "close_stream",
            Action::Stream(StreamCall::Watch { .. }) => "watch_user",
            Action::Stream(StreamCall::Unwatch { .. }) => "unwatch_user",
            Action::Store(StoreCall::PruneMappings { .. }) => "prune_mappings",
            Action::Store(StoreCall::MappingByGitterId { .. }) => "mapping_by_gitter_id",
            Action::Store(StoreCall::MappingByEvent { .. }) => "mapping_by_event",
        }
    }

    /// The Gitter send this is, if it is one.
    pub fn gitter_send(&self) -> Option<&GitterCall> {
        match self {
            Action::Gitter {
                call: call @ GitterCall::SendMessage { .. },
                ..
            } => Some(call),
            _ => None,
        }
    }
}

impl Effect {
    /// Which way the effect carries a bridged message, if it does (for the drivers'
    /// metrics; the continuation says it, and only the core reads continuations).
    pub fn carries(&self) -> Option<Direction> {
        match &self.then {
            Then::Relay(RelayThen::ToMatrix(_)) => Some(Direction::GitterToMatrix),
            Then::Relay(RelayThen::ToGitter(_)) => Some(Direction::MatrixToGitter),
            _ => None,
        }
    }
}

/// The two ways a message crosses the bridge.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Direction {
    /// A Gitter message relayed into a portal.
    GitterToMatrix,
    /// A portal owner's message posted on Gitter.
    MatrixToGitter,
}

/// The continuation of an effect: which part of the core asked, and what it needs to go on
/// when the answer comes. Persisted with the effect (an answer may come after a restart);
/// drivers carry it and never read it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Then {
    /// Nobody waits for the answer: the lane's order is all that matters.
    Nothing,
    /// The ghosts' (`ghost.rs`).
    Ghost(GhostThen),
    /// The bot's invitations (`invite.rs`).
    Invite(InviteThen),
    /// The portals' (`portal.rs`).
    Portal(PortalThen),
    /// The relay's, both ways (`relay.rs`).
    Relay(RelayThen),
    /// The logins' (`login.rs`).
    Login(LoginThen),
    /// The bot's commands (`commands.rs`).
    Command(CommandThen),
    /// The streams' (`stream.rs`).
    Stream(StreamThen),
    /// The store's upkeep (`prune.rs`).
    Prune(PruneThen),
    /// Edits and redactions of the owner's bridged messages (`edit.rs`).
    Edit(EditThen),
    /// What Gitter's realtime API reports besides new messages (`realtime.rs`).
    Realtime(RealtimeThen),
}

/// What the realtime events go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RealtimeThen {
    /// A message edited on Gitter: its mapping in one portal was looked up in the store.
    Edited {
        /// The portal owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
        /// The message as edited (boxed: it is far larger than the other continuations).
        message: Box<crate::GitterMessage>,
    },
    /// A message deleted on Gitter: its mapping in one portal was looked up in the store.
    Removed {
        /// The portal owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
        /// The message.
        gitter_id: GitterMessageId,
    },
}

/// An edit or a redaction of a portal owner's message, on its way to Gitter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Correction {
    /// The portal owner.
    pub owner: OwnedUserId,
    /// The Gitter room.
    pub room: GitterRoomId,
    /// The portal room (where the owner is told what happened).
    pub portal: OwnedRoomId,
    /// The edited or redacted Matrix event.
    pub target: ruma::OwnedEventId,
    /// The edit's or the redaction's own event.
    pub event_id: ruma::OwnedEventId,
    /// What to do to the Gitter message.
    pub what: CorrectionKind,
}

/// What a [`Correction`] does.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CorrectionKind {
    /// Replace the text.
    Edit {
        /// The new `body`.
        body: String,
        /// An emote (a Gitter status message).
        status: bool,
    },
    /// Delete the message.
    Redact,
}

/// What the edits and redactions go on with. The corrections are boxed, as the portal
/// creation is ([`MatrixCall::CreatePortal`]): they would double every continuation's size.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum EditThen {
    /// The target's mapping was looked up in the store (it was not in the hot set).
    Found(Box<Correction>),
    /// The Gitter message was edited, or refused the edit (past Gitter's window: a
    /// correction in its thread follows).
    Edited {
        /// The edit.
        correction: Box<Correction>,
        /// The Gitter message.
        gitter_id: GitterMessageId,
    },
    /// The Gitter message was deleted, or could not be.
    Deleted(Box<Correction>),
}

/// What the ghosts go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum GhostThen {
    /// The ghost is registered: remember it.
    Registered(OwnedUserId),
    /// The avatar at `url` is uploaded: remember it, and set it as the ghost's.
    Avatar {
        /// The ghost.
        user: OwnedUserId,
        /// The avatar's URL on the web.
        url: String,
    },
}

/// What the bot's invitations go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum InviteThen {
    /// The bot joined a room `inviter` invited it to: count the members next (or leave, when
    /// the inviter may not use the bridge).
    BotJoined {
        /// The room.
        room: OwnedRoomId,
        /// Who invited the bot.
        inviter: OwnedUserId,
        /// Whether the inviter may use the bridge.
        permitted: bool,
    },
    /// The members are listed: keep the room as `inviter`'s control room if it is private.
    CheckPrivate {
        /// The room.
        room: OwnedRoomId,
        /// Who invited the bot.
        inviter: OwnedUserId,
    },
    /// The bot joined a room that was encrypted before it came: say why it cannot stay, and
    /// leave. (Appended last: outbox records are postcard-encoded by variant index.)
    EncryptedJoined {
        /// The room.
        room: OwnedRoomId,
        /// Who invited the bot.
        inviter: OwnedUserId,
    },
}

/// What the portals go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PortalThen {
    /// The portal room of (owner, room) is created: record it.
    Created {
        /// The owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
        /// The localpart of the alias that made the creation idempotent (deleted next).
        alias: String,
    },
    /// The Gitter room's members are listed: their ghosts join the portal.
    Members {
        /// The owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
    },
    /// The last messages of the Gitter room are read: the portal being created starts with
    /// them ([`crate::history`]).
    History {
        /// The owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
    },
    /// The Gitter room's avatar at `url` is uploaded: remember it, and make it the portal's.
    Avatar {
        /// The portal.
        room: OwnedRoomId,
        /// The avatar's URL on the web.
        url: String,
    },
}

/// What the relay goes on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum RelayThen {
    /// A Gitter message is in the portal: complete its mapping.
    ToMatrix(RelayRef),
    /// A Matrix message is on Gitter: map it.
    ToGitter(SendOrigin),
    /// The Matrix event a Matrix reply or thread message answers is not in the hot set:
    /// the store was asked for its Gitter message; then the send goes on as this very
    /// effect (it keeps its place in the portal's lane: see `Bridge::continue_as`).
    FindParent(Box<PendingSend>),
    /// The root of a Gitter thread reply has no event in the portal the hot set knows (its
    /// send may still be in flight, or it left the hot set): the lookup waited behind that
    /// send in the portal's lane; then the relay goes on as this very effect.
    FindRoot(Box<PendingRelay>),
    /// An image of a Gitter message was uploaded: it is sent as an `m.image` after the
    /// message, as this very effect (its place in the portal's lane).
    Image(Box<PendingImage>),
}

/// An image of a Gitter message waiting for its upload ([`MatrixCall::MirrorMedia`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingImage {
    /// The portal.
    pub room: OwnedRoomId,
    /// The author's ghost.
    pub sender: OwnedUserId,
    /// The image's `http(s)` URL on the web.
    pub url: String,
    /// The image's name.
    pub name: String,
    /// The thread of the message it came with.
    pub thread: Option<ThreadRef>,
    /// The message's Gitter time.
    pub ts: Option<Timestamp>,
}

/// A Matrix message waiting for the Gitter id of the message it answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingSend {
    /// The event answered (a thread's root, or the event replied to).
    pub target: ruma::OwnedEventId,
    /// The Gitter send, without its `parent` yet.
    pub send: Action,
    /// Where the message comes from.
    pub origin: SendOrigin,
}

/// A Gitter thread reply waiting for its root's event in one portal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PendingRelay {
    /// The thread's root on Gitter.
    pub root: GitterMessageId,
    /// The Matrix send, without its thread yet.
    pub send: Action,
    /// The relay it is.
    pub relay: RelayRef,
}

/// What the logins go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum LoginThen {
    /// The code is exchanged: fetch the Gitter user of the token.
    CodeExchanged {
        /// Who is logging in.
        user: OwnedUserId,
        /// The browser request to answer.
        request: RequestId,
    },
    /// The Gitter user is known: record the login (the token is the call's).
    UserFetched {
        /// Who is logging in.
        user: OwnedUserId,
        /// The browser request to answer.
        request: RequestId,
    },
    /// The user's rooms are listed after a login: open their portals.
    OpenPortals {
        /// Who logged in.
        user: OwnedUserId,
    },
}

/// What the bot's commands go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum CommandThen {
    /// `list`: show the rooms.
    Listed {
        /// Whose command.
        user: OwnedUserId,
    },
    /// `join`, `leave` or `invite`: the typed uri is resolved to a room.
    Resolved {
        /// Whose command.
        user: OwnedUserId,
        /// The uri typed by the user.
        uri: String,
        /// What to do with the room.
        purpose: ResolvePurpose,
    },
    /// Joined on Gitter: open the portal.
    Joined {
        /// Whose command.
        user: OwnedUserId,
    },
    /// Left on Gitter: close the portal.
    Left {
        /// Whose command.
        user: OwnedUserId,
        /// The room.
        room: GitterRoomId,
        /// The uri shown back to the user.
        uri: String,
    },
}

impl CommandThen {
    /// Whose command it is.
    pub fn user(&self) -> &OwnedUserId {
        match self {
            CommandThen::Listed { user }
            | CommandThen::Resolved { user, .. }
            | CommandThen::Joined { user }
            | CommandThen::Left { user, .. } => user,
        }
    }
}

/// What the streams go on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum StreamThen {
    /// A catch-up page is read: relay it and read on.
    CaughtUp {
        /// The room.
        room: GitterRoomId,
        /// The cursor the page was read after.
        after: Option<GitterMessageId>,
    },
}

/// What the store's upkeep goes on with.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum PruneThen {
    /// A batch is pruned: go on from where it stopped.
    Pruned {
        /// The retention cut of this pass.
        older_than: Timestamp,
    },
}

/// The content of a Matrix message the bridge sends.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatrixContent {
    /// `m.text`, `m.notice` or `m.emote`.
    pub msgtype: OutMsgType,
    /// Plain-text body.
    pub body: String,
    /// Sanitised HTML (`format: org.matrix.custom.html`), when any.
    pub formatted_body: Option<String>,
    /// The thread the message is in (`m.relates_to`), when any.
    pub thread: Option<ThreadRef>,
    /// Who the message mentions (`m.mentions`, spec: "User and room mentions"), when the
    /// bridge says: their clients highlight and notify.
    pub mentions: Option<Mentions>,
}

/// The `m.mentions` of a message.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Mentions {
    /// The users mentioned.
    pub user_ids: Vec<OwnedUserId>,
    /// The whole room (`@room`).
    pub room: bool,
}

/// A message's place in a thread (spec: "Threading"): `rel_type: m.thread` to the root, with
/// the reply fallback (`is_falling_back`, `m.in_reply_to`) that clients without threads
/// show as a reply.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ThreadRef {
    /// The thread's root event.
    pub root: ruma::OwnedEventId,
    /// The event a client without threads shows this as a reply to.
    pub in_reply_to: ruma::OwnedEventId,
}

impl MatrixContent {
    /// A plain `m.notice` (what the bot says).
    pub fn notice(body: impl Into<String>) -> Self {
        Self {
            msgtype: OutMsgType::Notice,
            body: body.into(),
            formatted_body: None,
            thread: None,
            mentions: None,
        }
    }
}

/// Message types the bridge sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OutMsgType {
    /// `m.text`.
    Text,
    /// `m.notice`.
    Notice,
    /// `m.emote`.
    Emote,
}

impl OutMsgType {
    /// The Matrix `msgtype` string.
    pub fn as_str(self) -> &'static str {
        match self {
            OutMsgType::Text => "m.text",
            OutMsgType::Notice => "m.notice",
            OutMsgType::Emote => "m.emote",
        }
    }
}

/// The Gitter message a Matrix send relays (its mapping is completed on success).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RelayRef {
    /// The portal owner.
    pub owner: OwnedUserId,
    /// The Gitter message.
    pub gitter_id: GitterMessageId,
}

/// The Matrix event a Gitter send comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendOrigin {
    /// The portal owner.
    pub owner: OwnedUserId,
    /// The portal room.
    pub room: OwnedRoomId,
    /// The Matrix event.
    pub event_id: ruma::OwnedEventId,
}

/// What a resolved room is for.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ResolvePurpose {
    /// `join <uri>`: join on Gitter, then open the portal.
    Join,
    /// `leave <uri>`: leave on Gitter, then kick from the portal.
    Leave,
    /// `invite <uri>`: open or re-invite to the portal.
    Invite,
}

/// An effect's result on its way back to the part of the core that asked (see
/// [`Then`]): the action it answers, for what the continuation does not repeat.
pub(crate) struct Answer {
    /// The effect.
    pub(crate) id: EffectId,
    /// The action's name (for warnings).
    pub(crate) name: &'static str,
    /// The lane it ran in.
    pub(crate) lane: Lane,
    /// What was done.
    pub(crate) action: Action,
    /// How it went.
    pub(crate) result: crate::EffectResult,
    /// Whether an earlier try failed in a way that may have left it done (it was retried).
    pub(crate) retried: bool,
}
