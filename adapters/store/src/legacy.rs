//! Record formats of earlier schema versions, kept only so migrations can read them.
//!
//! postcard is not self-describing (see `codec.rs`): a record written by an older binary can
//! only be decoded with the type it was encoded from. Each migration that changes a record's
//! shape decodes the old rows with the frozen copy here and re-encodes them as the current
//! type. Never change these types; add a new module for the next version instead.

use std::collections::{BTreeMap, BTreeSet};

use gitter_bridge_core::{
    Action, CommandThen, Effect, EffectId, GhostThen, GitterCall, GitterMessage, GitterMessageId,
    GitterRoomId, GitterUserId, InviteThen, Lane, LoginThen, MatrixCall, MatrixContent, OutMsgType,
    OwnedRoomId, OwnedUserId, PortalState, PortalThen, PruneThen, RelayRef, RelayThen, RequestId,
    ResolvePurpose, Secret, SendOrigin, StoreCall, StreamCall, StreamThen, Then, Timestamp,
};
use serde::{Deserialize, Serialize};

/// An outbox row of schema version 1.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct EffectV1 {
    pub(crate) id: EffectId,
    pub(crate) lane: Lane,
    pub(crate) action: ActionV1,
}

/// `Action` of schema version 1 (variants in their original order: postcard encodes the
/// index).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) enum ActionV1 {
    // ---- Matrix ----
    RegisterGhost {
        user: OwnedUserId,
    },
    SetDisplayName {
        user: OwnedUserId,
        name: String,
    },
    CreateRoom {
        creator: OwnedUserId,
        name: String,
        topic: String,
        invite: Vec<OwnedUserId>,
        power_users: BTreeMap<OwnedUserId, i64>,
        purpose: CreatePurposeV3,
    },
    Invite {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedUserId,
    },
    Join {
        room: OwnedRoomId,
        user: OwnedUserId,
        purpose: JoinPurposeV3,
    },
    Leave {
        room: OwnedRoomId,
        user: OwnedUserId,
    },
    Kick {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedUserId,
        reason: String,
    },
    SendMessage {
        room: OwnedRoomId,
        sender: OwnedUserId,
        content: MatrixContentV3,
        relay: Option<RelayRef>,
        ts: Option<Timestamp>,
    },
    RoomMembers {
        room: OwnedRoomId,
        purpose: MembersPurposeV3,
    },

    // ---- Gitter ----
    ExchangeCode {
        code: Secret,
        user: OwnedUserId,
        request: RequestId,
    },
    GetGitterUser {
        token: Secret,
        user: OwnedUserId,
        request: RequestId,
    },
    ListRooms {
        token: Secret,
        user: OwnedUserId,
        purpose: ListPurposeV3,
    },
    ResolveRoom {
        token: Secret,
        user: OwnedUserId,
        uri: String,
        purpose: ResolvePurpose,
    },
    JoinGitterRoom {
        token: Secret,
        user: OwnedUserId,
        gitter_user: GitterUserId,
        room: GitterRoomId,
    },
    LeaveGitterRoom {
        token: Secret,
        user: OwnedUserId,
        gitter_user: GitterUserId,
        room: GitterRoomId,
        uri: String,
    },
    GitterRoomMembers {
        token: Secret,
        room: GitterRoomId,
        owner: OwnedUserId,
    },
    FetchMessages {
        token: Secret,
        room: GitterRoomId,
        after: Option<GitterMessageId>,
        limit: u32,
    },
    SendGitter {
        token: Secret,
        gitter_user: GitterUserId,
        room: GitterRoomId,
        text: String,
        status: bool,
        reconcile: bool,
        // Read to keep the old layout; the reconcile no longer compares clocks.
        #[allow(dead_code)]
        not_before: Timestamp,
        origin: SendOrigin,
    },
    OpenStream {
        room: GitterRoomId,
        token: Secret,
    },
    CloseStream {
        room: GitterRoomId,
    },
}

/// A portal row of schema version 1: its queued messages lived inside it.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct PortalRecordV1 {
    pub(crate) owner: OwnedUserId,
    pub(crate) gitter_room: GitterRoomId,
    pub(crate) room_id: Option<OwnedRoomId>,
    pub(crate) state: PortalState,
    pub(crate) joined_ghosts: BTreeSet<GitterUserId>,
    pub(crate) queued: Vec<GitterMessageV3>,
}

/// A `gitter_rooms` row of schema versions 1 and 2: the cursor and the ring of recent ids
/// lived inside it, so every relayed message rewrote the room.
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct GitterRoomRecordV2 {
    pub(crate) id: GitterRoomId,
    pub(crate) uri: Option<String>,
    pub(crate) name: String,
    pub(crate) topic: String,
    pub(crate) user_count: Option<u64>,
    pub(crate) cursor: Option<GitterMessageId>,
    pub(crate) reader: Option<OwnedUserId>,
    /// Decoded only to be dropped: version 3 keeps the ring in memory.
    #[allow(dead_code)]
    pub(crate) recent: std::collections::VecDeque<GitterMessageId>,
}

/// A `messages` row of schema versions 1 and 2, keyed by (owner, Gitter message id).
#[derive(Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
pub(crate) struct MessageRecordV2 {
    pub(crate) owner: OwnedUserId,
    pub(crate) gitter_room: GitterRoomId,
    pub(crate) gitter_id: GitterMessageId,
    pub(crate) event_id: Option<gitter_bridge_core::OwnedEventId>,
    pub(crate) origin: gitter_bridge_core::Origin,
}

impl ActionV1 {
    /// The action of version 3 (versions 2 and 3 share the outbox's layout). A room creation gets the alias that makes it idempotent (drawn
    /// here: the old row had none); a send gets its room's cursor as the point after which
    /// a reconcile looks (the cursor never passes a message that was not relayed, so the
    /// send's copy, if any, is after it).
    pub(crate) fn upgrade(
        self,
        alias: impl FnOnce() -> String,
        cursor: impl FnOnce(&GitterRoomId) -> Option<GitterMessageId>,
    ) -> ActionV3 {
        match self {
            ActionV1::RegisterGhost { user } => ActionV3::RegisterGhost { user },
            ActionV1::SetDisplayName { user, name } => ActionV3::SetDisplayName { user, name },
            ActionV1::CreateRoom {
                creator,
                name,
                topic,
                invite,
                power_users,
                purpose,
            } => ActionV3::CreateRoom {
                creator,
                name,
                topic,
                invite,
                power_users,
                purpose,
                alias: alias(),
            },
            ActionV1::Invite {
                room,
                sender,
                target,
            } => ActionV3::Invite {
                room,
                sender,
                target,
            },
            ActionV1::Join {
                room,
                user,
                purpose,
            } => ActionV3::Join {
                room,
                user,
                purpose,
            },
            ActionV1::Leave { room, user } => ActionV3::Leave { room, user },
            ActionV1::Kick {
                room,
                sender,
                target,
                reason,
            } => ActionV3::Kick {
                room,
                sender,
                target,
                reason,
            },
            ActionV1::SendMessage {
                room,
                sender,
                content,
                relay,
                ts,
            } => ActionV3::SendMessage {
                room,
                sender,
                content,
                relay,
                ts,
            },
            ActionV1::RoomMembers { room, purpose } => ActionV3::RoomMembers { room, purpose },
            ActionV1::ExchangeCode {
                code,
                user,
                request,
            } => ActionV3::ExchangeCode {
                code,
                user,
                request,
            },
            ActionV1::GetGitterUser {
                token,
                user,
                request,
            } => ActionV3::GetGitterUser {
                token,
                user,
                request,
            },
            ActionV1::ListRooms {
                token,
                user,
                purpose,
            } => ActionV3::ListRooms {
                token,
                user,
                purpose,
            },
            ActionV1::ResolveRoom {
                token,
                user,
                uri,
                purpose,
            } => ActionV3::ResolveRoom {
                token,
                user,
                uri,
                purpose,
            },
            ActionV1::JoinGitterRoom {
                token,
                user,
                gitter_user,
                room,
            } => ActionV3::JoinGitterRoom {
                token,
                user,
                gitter_user,
                room,
            },
            ActionV1::LeaveGitterRoom {
                token,
                user,
                gitter_user,
                room,
                uri,
            } => ActionV3::LeaveGitterRoom {
                token,
                user,
                gitter_user,
                room,
                uri,
            },
            ActionV1::GitterRoomMembers { token, room, owner } => {
                ActionV3::GitterRoomMembers { token, room, owner }
            }
            ActionV1::FetchMessages {
                token,
                room,
                after,
                limit,
            } => ActionV3::FetchMessages {
                token,
                room,
                after,
                limit,
            },
            ActionV1::SendGitter {
                token,
                gitter_user,
                room,
                text,
                status,
                reconcile,
                not_before: _,
                origin,
            } => ActionV3::SendGitter {
                after: cursor(&room),
                token,
                gitter_user,
                room,
                text,
                status,
                reconcile,
                origin,
            },
            ActionV1::OpenStream { room, token } => ActionV3::OpenStream { room, token },
            ActionV1::CloseStream { room } => ActionV3::CloseStream { room },
        }
    }
}

/// An outbox row of schema versions 2 and 3.
#[derive(Serialize, Deserialize)]
pub(crate) struct EffectV3 {
    pub(crate) id: EffectId,
    pub(crate) lane: Lane,
    pub(crate) action: ActionV3,
}

/// `Action` of schema versions 2 and 3: one flat enum, the continuation data (purposes, the
/// relay, the origin, the browser request) in the actions' fields.
#[derive(Serialize, Deserialize)]
pub(crate) enum ActionV3 {
    RegisterGhost {
        user: OwnedUserId,
    },
    SetDisplayName {
        user: OwnedUserId,
        name: String,
    },
    CreateRoom {
        creator: OwnedUserId,
        name: String,
        topic: String,
        invite: Vec<OwnedUserId>,
        power_users: BTreeMap<OwnedUserId, i64>,
        purpose: CreatePurposeV3,
        alias: String,
    },
    Invite {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedUserId,
    },
    Join {
        room: OwnedRoomId,
        user: OwnedUserId,
        purpose: JoinPurposeV3,
    },
    Leave {
        room: OwnedRoomId,
        user: OwnedUserId,
    },
    Kick {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedUserId,
        reason: String,
    },
    SendMessage {
        room: OwnedRoomId,
        sender: OwnedUserId,
        content: MatrixContentV3,
        relay: Option<RelayRef>,
        ts: Option<Timestamp>,
    },
    DeleteAlias {
        alias: String,
    },
    RoomMembers {
        room: OwnedRoomId,
        purpose: MembersPurposeV3,
    },
    ExchangeCode {
        code: Secret,
        user: OwnedUserId,
        request: RequestId,
    },
    GetGitterUser {
        token: Secret,
        user: OwnedUserId,
        request: RequestId,
    },
    ListRooms {
        token: Secret,
        user: OwnedUserId,
        purpose: ListPurposeV3,
    },
    ResolveRoom {
        token: Secret,
        user: OwnedUserId,
        uri: String,
        purpose: ResolvePurpose,
    },
    JoinGitterRoom {
        token: Secret,
        user: OwnedUserId,
        gitter_user: GitterUserId,
        room: GitterRoomId,
    },
    LeaveGitterRoom {
        token: Secret,
        user: OwnedUserId,
        gitter_user: GitterUserId,
        room: GitterRoomId,
        uri: String,
    },
    GitterRoomMembers {
        token: Secret,
        room: GitterRoomId,
        owner: OwnedUserId,
    },
    FetchMessages {
        token: Secret,
        room: GitterRoomId,
        after: Option<GitterMessageId>,
        limit: u32,
    },
    SendGitter {
        token: Secret,
        gitter_user: GitterUserId,
        room: GitterRoomId,
        text: String,
        status: bool,
        reconcile: bool,
        after: Option<GitterMessageId>,
        origin: SendOrigin,
    },
    OpenStream {
        room: GitterRoomId,
        token: Secret,
    },
    CloseStream {
        room: GitterRoomId,
    },
    PruneMappings {
        older_than: Timestamp,
        resume: Option<Vec<u8>>,
        batch: u32,
    },
}

/// A Gitter message as a `queued` row held it up to schema version 3 (no `mentions`).
#[derive(Clone, Serialize, Deserialize)]
pub(crate) struct GitterMessageV3 {
    pub(crate) id: GitterMessageId,
    pub(crate) text: String,
    pub(crate) html: String,
    pub(crate) status: bool,
    pub(crate) sent: String,
    pub(crate) from: gitter_bridge_core::GitterUser,
    pub(crate) parent_id: Option<GitterMessageId>,
}

impl GitterMessageV3 {
    /// The message of version 4: the mentions of a message queued by an older binary are
    /// not known (they were not kept), so it has none.
    pub(crate) fn upgrade(self) -> GitterMessage {
        GitterMessage {
            id: self.id,
            text: self.text,
            html: self.html,
            status: self.status,
            sent: self.sent,
            from: self.from,
            parent_id: self.parent_id,
            mentions: Vec::new(),
        }
    }
}

/// The content of a Matrix message, up to schema version 3 (no thread).
#[derive(Serialize, Deserialize)]
#[cfg_attr(test, derive(Clone))]
pub(crate) struct MatrixContentV3 {
    pub(crate) msgtype: OutMsgType,
    pub(crate) body: String,
    pub(crate) formatted_body: Option<String>,
}

impl MatrixContentV3 {
    fn upgrade(self) -> MatrixContent {
        MatrixContent {
            msgtype: self.msgtype,
            body: self.body,
            formatted_body: self.formatted_body,
            thread: None,
            mentions: None,
        }
    }
}

/// Why a room was created, up to schema version 3.
#[derive(Serialize, Deserialize)]
pub(crate) enum CreatePurposeV3 {
    Portal {
        owner: OwnedUserId,
        room: GitterRoomId,
    },
}

/// Why someone joined a room, up to schema version 3.
#[derive(Serialize, Deserialize)]
pub(crate) enum JoinPurposeV3 {
    BotInvite {
        inviter: OwnedUserId,
        permitted: bool,
    },
    Ghost,
}

/// Why room members were listed, up to schema version 3.
#[derive(Serialize, Deserialize)]
pub(crate) enum MembersPurposeV3 {
    CheckPrivate { inviter: OwnedUserId },
}

/// Why a user's rooms were listed, up to schema version 3.
#[derive(Serialize, Deserialize)]
pub(crate) enum ListPurposeV3 {
    ListCommand,
    OpenPortals,
}

impl EffectV3 {
    /// The effect of version 4: the action typed by destination, the token in one field,
    /// and what the core does with the answer moved out of the action into its
    /// continuation.
    pub(crate) fn upgrade(self) -> Effect {
        use ActionV3 as A;
        let m = Action::Matrix;
        let g = |token, call| Action::Gitter { token, call };
        let (action, then) = match self.action {
            A::RegisterGhost { user } => (
                m(MatrixCall::RegisterGhost { user: user.clone() }),
                Then::Ghost(GhostThen::Registered(user)),
            ),
            A::SetDisplayName { user, name } => {
                (m(MatrixCall::SetDisplayName { user, name }), Then::Nothing)
            }
            A::CreateRoom {
                creator,
                name,
                topic,
                invite,
                power_users,
                purpose: CreatePurposeV3::Portal { owner, room },
                alias,
            } => (
                m(MatrixCall::CreateRoom {
                    creator,
                    name,
                    topic,
                    invite,
                    power_users,
                    alias: alias.clone(),
                }),
                Then::Portal(PortalThen::Created { owner, room, alias }),
            ),
            A::Invite {
                room,
                sender,
                target,
            } => (
                m(MatrixCall::Invite {
                    room,
                    sender,
                    target,
                }),
                Then::Nothing,
            ),
            A::Join {
                room,
                user,
                purpose,
            } => (
                m(MatrixCall::Join {
                    room: room.clone(),
                    user,
                }),
                match purpose {
                    JoinPurposeV3::BotInvite { inviter, permitted } => {
                        Then::Invite(InviteThen::BotJoined {
                            room,
                            inviter,
                            permitted,
                        })
                    }
                    JoinPurposeV3::Ghost => Then::Nothing,
                },
            ),
            A::Leave { room, user } => (m(MatrixCall::Leave { room, user }), Then::Nothing),
            A::Kick {
                room,
                sender,
                target,
                reason,
            } => (
                m(MatrixCall::Kick {
                    room,
                    sender,
                    target,
                    reason,
                }),
                Then::Nothing,
            ),
            A::SendMessage {
                room,
                sender,
                content,
                relay,
                ts,
            } => (
                m(MatrixCall::SendMessage {
                    room,
                    sender,
                    content: content.upgrade(),
                    ts,
                }),
                relay.map_or(Then::Nothing, |r| Then::Relay(RelayThen::ToMatrix(r))),
            ),
            A::DeleteAlias { alias } => (m(MatrixCall::DeleteAlias { alias }), Then::Nothing),
            A::RoomMembers {
                room,
                purpose: MembersPurposeV3::CheckPrivate { inviter },
            } => (
                m(MatrixCall::RoomMembers { room: room.clone() }),
                Then::Invite(InviteThen::CheckPrivate { room, inviter }),
            ),
            A::ExchangeCode {
                code,
                user,
                request,
            } => (
                Action::OAuth { code },
                Then::Login(LoginThen::CodeExchanged { user, request }),
            ),
            A::GetGitterUser {
                token,
                user,
                request,
            } => (
                g(token, GitterCall::CurrentUser),
                Then::Login(LoginThen::UserFetched { user, request }),
            ),
            A::ListRooms {
                token,
                user,
                purpose,
            } => (
                g(token, GitterCall::ListRooms),
                match purpose {
                    ListPurposeV3::ListCommand => Then::Command(CommandThen::Listed { user }),
                    ListPurposeV3::OpenPortals => Then::Login(LoginThen::OpenPortals { user }),
                },
            ),
            A::ResolveRoom {
                token,
                user,
                uri,
                purpose,
            } => (
                g(token, GitterCall::ResolveRoom { uri: uri.clone() }),
                Then::Command(CommandThen::Resolved { user, uri, purpose }),
            ),
            A::JoinGitterRoom {
                token,
                user,
                gitter_user,
                room,
            } => (
                g(token, GitterCall::JoinRoom { gitter_user, room }),
                Then::Command(CommandThen::Joined { user }),
            ),
            A::LeaveGitterRoom {
                token,
                user,
                gitter_user,
                room,
                uri,
            } => (
                g(
                    token,
                    GitterCall::LeaveRoom {
                        gitter_user,
                        room: room.clone(),
                    },
                ),
                Then::Command(CommandThen::Left { user, room, uri }),
            ),
            A::GitterRoomMembers { token, room, owner } => (
                g(token, GitterCall::RoomMembers { room: room.clone() }),
                Then::Portal(PortalThen::Members { owner, room }),
            ),
            A::FetchMessages {
                token,
                room,
                after,
                limit,
            } => (
                g(
                    token,
                    GitterCall::FetchMessages {
                        room: room.clone(),
                        after: after.clone(),
                        limit,
                    },
                ),
                Then::Stream(StreamThen::CaughtUp { room, after }),
            ),
            A::SendGitter {
                token,
                gitter_user,
                room,
                text,
                status,
                reconcile,
                after,
                origin,
            } => (
                g(
                    token,
                    GitterCall::SendMessage {
                        gitter_user,
                        room,
                        text,
                        status,
                        reconcile,
                        after,
                        // Version 3 posted no thread replies.
                        parent: None,
                    },
                ),
                Then::Relay(RelayThen::ToGitter(origin)),
            ),
            A::OpenStream { room, token } => (
                Action::Stream(StreamCall::Open { room, token }),
                Then::Nothing,
            ),
            A::CloseStream { room } => (Action::Stream(StreamCall::Close { room }), Then::Nothing),
            A::PruneMappings {
                older_than,
                resume,
                batch,
            } => (
                Action::Store(StoreCall::PruneMappings {
                    older_than,
                    resume,
                    batch,
                }),
                Then::Prune(PruneThen::Pruned { older_than }),
            ),
        };
        Effect {
            id: self.id,
            lane: self.lane,
            action,
            then,
        }
    }
}
