//! What the core asks the drivers to do: [`Effect`].
//!
//! Every effect has a stable [`EffectId`] and is written to the outbox in the change set of
//! the step that emitted it; the driver executes it after the commit and reports the result
//! as [`crate::Input::EffectDone`]. Effects of one [`Lane`] must run one after the other, in
//! the order emitted (a ghost is registered before it joins, and joins before it speaks);
//! effects of different lanes may run concurrently.

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
    /// The store's upkeep (pruning old mappings): it neither waits behind nor holds anyone's
    /// work. (Variants are only ever added at the end: postcard stores the index.)
    Store,
}

/// The actions. Matrix actions are done with the as_token, as `sender` (masquerading with
/// `user_id` when it is a ghost); Gitter actions with the token they carry.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum Action {
    // ---- Matrix ----
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
    /// [`crate::EffectOutput::RoomCreated`].
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
        /// Why the room is created.
        purpose: CreatePurpose,
        /// Localpart of a room alias created with the room (`room_alias_name`), drawn at
        /// random when the effect is emitted and kept in the outbox with it. It makes the
        /// creation idempotent: createRoom has no transaction id, so when its answer is lost
        /// the retry's `M_ROOM_IN_USE` says the room exists and the alias names it, instead
        /// of a second portal room (the adapter resolves it). The core deletes the alias once
        /// the room is recorded ([`Action::DeleteAlias`]).
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
        /// Why.
        purpose: JoinPurpose,
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
        /// Set when this relays a Gitter message (the mapping is completed on success).
        relay: Option<RelayRef>,
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
        /// Why.
        purpose: MembersPurpose,
    },

    // ---- Gitter ----
    /// Exchange an OAuth code. Returns [`crate::EffectOutput::Token`].
    ExchangeCode {
        /// The code from the callback.
        code: Secret,
        /// Who is logging in.
        user: OwnedUserId,
        /// The browser request to answer.
        request: RequestId,
    },
    /// `GET /v1/user/me`. Returns [`crate::EffectOutput::GitterUser`].
    GetGitterUser {
        /// The new token.
        token: Secret,
        /// Who is logging in.
        user: OwnedUserId,
        /// The browser request to answer.
        request: RequestId,
    },
    /// `GET /v1/user/:id/rooms`. Returns [`crate::EffectOutput::GitterRooms`].
    ListRooms {
        /// Token of the user.
        token: Secret,
        /// Whose rooms (Matrix side).
        user: OwnedUserId,
        /// Why.
        purpose: ListPurpose,
    },
    /// `POST /v1/rooms {uri}`. Returns [`crate::EffectOutput::GitterRoom`].
    ResolveRoom {
        /// Token of the user.
        token: Secret,
        /// Whose command.
        user: OwnedUserId,
        /// The uri typed by the user.
        uri: String,
        /// What to do with the room.
        purpose: ResolvePurpose,
    },
    /// `POST /v1/user/:id/rooms {id}`. Returns [`crate::EffectOutput::GitterRoom`].
    JoinGitterRoom {
        /// Token of the user.
        token: Secret,
        /// Whose command.
        user: OwnedUserId,
        /// The user's Gitter id.
        gitter_user: GitterUserId,
        /// The room.
        room: GitterRoomId,
    },
    /// `DELETE /v1/rooms/:rid/users/:uid`.
    LeaveGitterRoom {
        /// Token of the user.
        token: Secret,
        /// Whose command.
        user: OwnedUserId,
        /// The user's Gitter id.
        gitter_user: GitterUserId,
        /// The room.
        room: GitterRoomId,
        /// The uri shown back to the user.
        uri: String,
    },
    /// `GET /v1/rooms/:rid/users` (all pages). Returns [`crate::EffectOutput::GitterUsers`].
    GitterRoomMembers {
        /// A member's token.
        token: Secret,
        /// The room.
        room: GitterRoomId,
        /// The portal that asked (eager ghost joins).
        owner: OwnedUserId,
    },
    /// `GET /v1/rooms/:rid/chatMessages?afterId=&limit=`. Without `after`, the newest `limit`
    /// messages. Returns [`crate::EffectOutput::GitterMessages`], oldest first.
    FetchMessages {
        /// The reader's token.
        token: Secret,
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
    SendGitter {
        /// The portal owner's token.
        token: Secret,
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
        /// The Matrix side of the message.
        origin: SendOrigin,
    },
    /// Open (or replace) the room's stream with this token. The adapter reports
    /// [`crate::Input::StreamConnected`], messages and disconnects, and reconnects by itself
    /// with backoff except after a revoked token.
    OpenStream {
        /// The room.
        room: GitterRoomId,
        /// The reader's token.
        token: Secret,
    },
    /// Close the room's stream.
    CloseStream {
        /// The room.
        room: GitterRoomId,
    },

    // ---- Store ----
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
}

impl Action {
    /// Whether this is a Gitter API action (its failures may revoke a token).
    pub fn is_gitter(&self) -> bool {
        matches!(
            self,
            Action::ExchangeCode { .. }
                | Action::GetGitterUser { .. }
                | Action::ListRooms { .. }
                | Action::ResolveRoom { .. }
                | Action::JoinGitterRoom { .. }
                | Action::LeaveGitterRoom { .. }
                | Action::GitterRoomMembers { .. }
                | Action::FetchMessages { .. }
                | Action::SendGitter { .. }
                | Action::OpenStream { .. }
                | Action::CloseStream { .. }
        )
    }

    /// Whether a transient failure of this action keeps it in the outbox to be tried again
    /// later, with no limit on the count (an outage of hours heals by itself). Everything
    /// whose loss loses a message or a user's action is durable. Not durable: the steps of
    /// a login, whose browser waits for the answer (an OAuth code is single-use, and the
    /// page times out: the person is told and starts again), catch-up reads (the stream
    /// state machine retries them from the cursor on its own timer), stream control and
    /// pruning (its timer starts it again).
    pub fn is_durable(&self) -> bool {
        !matches!(
            self,
            Action::ExchangeCode { .. }
                | Action::GetGitterUser { .. }
                | Action::FetchMessages { .. }
                | Action::OpenStream { .. }
                | Action::CloseStream { .. }
                | Action::PruneMappings { .. }
        )
    }

    /// Whether this is the store's own work (the driver runs it against its store).
    pub fn is_store(&self) -> bool {
        matches!(self, Action::PruneMappings { .. })
    }

    /// The Gitter token the action uses, if any.
    pub fn gitter_token(&self) -> Option<&Secret> {
        match self {
            Action::GetGitterUser { token, .. }
            | Action::ListRooms { token, .. }
            | Action::ResolveRoom { token, .. }
            | Action::JoinGitterRoom { token, .. }
            | Action::LeaveGitterRoom { token, .. }
            | Action::GitterRoomMembers { token, .. }
            | Action::FetchMessages { token, .. }
            | Action::SendGitter { token, .. }
            | Action::OpenStream { token, .. } => Some(token),
            _ => None,
        }
    }

    /// A short name for logs and metrics.
    pub fn name(&self) -> &'static str {
        match self {
            Action::RegisterGhost { .. } => "register_ghost",
            Action::SetDisplayName { .. } => "set_display_name",
            Action::CreateRoom { .. } => "create_room",
            Action::Invite { .. } => "invite",
            Action::Join { .. } => "join",
            Action::Leave { .. } => "leave",
            Action::Kick { .. } => "kick",
            Action::SendMessage { .. } => "send_matrix",
            Action::RoomMembers { .. } => "room_members",
            Action::DeleteAlias { .. } => "delete_alias",
            Action::ExchangeCode { .. } => "exchange_code",
            Action::GetGitterUser { .. } => "get_gitter_user",
            Action::ListRooms { .. } => "list_rooms",
            Action::ResolveRoom { .. } => "resolve_room",
            Action::JoinGitterRoom { .. } => "join_gitter_room",
            Action::LeaveGitterRoom { .. } => "leave_gitter_room",
            Action::GitterRoomMembers { .. } => "gitter_room_members",
            Action::FetchMessages { .. } => "fetch_messages",
            Action::SendGitter { .. } => "send_gitter",
            Action::OpenStream { .. } => "open_stream",
            Action::CloseStream { .. } => "close_stream",
            Action::PruneMappings { .. } => "prune_mappings",
        }
    }
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
}

impl MatrixContent {
    /// A plain `m.notice` (what the bot says).
    pub fn notice(body: impl Into<String>) -> Self {
        Self {
            msgtype: OutMsgType::Notice,
            body: body.into(),
            formatted_body: None,
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

/// Why a Matrix room is created.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum CreatePurpose {
    /// A portal for (owner, Gitter room).
    Portal {
        /// The owner.
        owner: OwnedUserId,
        /// The Gitter room.
        room: GitterRoomId,
    },
}

/// Why someone joins a Matrix room.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum JoinPurpose {
    /// The bot accepts an invite from `inviter` (members are counted next).
    BotInvite {
        /// Who invited the bot.
        inviter: OwnedUserId,
        /// Whether the inviter may use the bridge.
        permitted: bool,
    },
    /// A ghost joins a portal.
    Ghost,
}

/// Why room members are listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MembersPurpose {
    /// Decide whether a room the bot was invited to is a private chat with `inviter`.
    CheckPrivate {
        /// Who invited the bot.
        inviter: OwnedUserId,
    },
}

/// Why a user's Gitter rooms are listed.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListPurpose {
    /// The `list` command.
    ListCommand,
    /// Right after login: open a portal for every room the user is a member of.
    OpenPortals,
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
