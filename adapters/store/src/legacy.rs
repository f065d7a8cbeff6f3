//! Record formats of earlier schema versions, kept only so migrations can read them.
//!
//! postcard is not self-describing (see `codec.rs`): a record written by an older binary can
//! only be decoded with the type it was encoded from. Each migration that changes a record's
//! shape decodes the old rows with the frozen copy here and re-encodes them as the current
//! type. Never change these types; add a new module for the next version instead.

use std::collections::{BTreeMap, BTreeSet};

use gitter_bridge_core::{
    Action, CreatePurpose, EffectId, GitterMessage, GitterMessageId, GitterRoomId, GitterUserId,
    JoinPurpose, Lane, ListPurpose, MatrixContent, MembersPurpose, OwnedRoomId, OwnedUserId,
    PortalState, RelayRef, RequestId, ResolvePurpose, Secret, SendOrigin, Timestamp,
};
use serde::Deserialize;

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
        purpose: CreatePurpose,
    },
    Invite {
        room: OwnedRoomId,
        sender: OwnedUserId,
        target: OwnedUserId,
    },
    Join {
        room: OwnedRoomId,
        user: OwnedUserId,
        purpose: JoinPurpose,
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
        content: MatrixContent,
        relay: Option<RelayRef>,
        ts: Option<Timestamp>,
    },
    RoomMembers {
        room: OwnedRoomId,
        purpose: MembersPurpose,
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
        purpose: ListPurpose,
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
    pub(crate) queued: Vec<GitterMessage>,
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
    /// The current action. A room creation gets the alias that makes it idempotent (drawn
    /// here: the old row had none); a send gets its room's cursor as the point after which
    /// a reconcile looks (the cursor never passes a message that was not relayed, so the
    /// send's copy, if any, is after it).
    pub(crate) fn upgrade(
        self,
        alias: impl FnOnce() -> String,
        cursor: impl FnOnce(&GitterRoomId) -> Option<GitterMessageId>,
    ) -> Action {
        match self {
            ActionV1::RegisterGhost { user } => Action::RegisterGhost { user },
            ActionV1::SetDisplayName { user, name } => Action::SetDisplayName { user, name },
            ActionV1::CreateRoom {
                creator,
                name,
                topic,
                invite,
                power_users,
                purpose,
            } => Action::CreateRoom {
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
            } => Action::Invite {
                room,
                sender,
                target,
            },
            ActionV1::Join {
                room,
                user,
                purpose,
            } => Action::Join {
                room,
                user,
                purpose,
            },
            ActionV1::Leave { room, user } => Action::Leave { room, user },
            ActionV1::Kick {
                room,
                sender,
                target,
                reason,
            } => Action::Kick {
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
            } => Action::SendMessage {
                room,
                sender,
                content,
                relay,
                ts,
            },
            ActionV1::RoomMembers { room, purpose } => Action::RoomMembers { room, purpose },
            ActionV1::ExchangeCode {
                code,
                user,
                request,
            } => Action::ExchangeCode {
                code,
                user,
                request,
            },
            ActionV1::GetGitterUser {
                token,
                user,
                request,
            } => Action::GetGitterUser {
                token,
                user,
                request,
            },
            ActionV1::ListRooms {
                token,
                user,
                purpose,
            } => Action::ListRooms {
                token,
                user,
                purpose,
            },
            ActionV1::ResolveRoom {
                token,
                user,
                uri,
                purpose,
            } => Action::ResolveRoom {
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
            } => Action::JoinGitterRoom {
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
            } => Action::LeaveGitterRoom {
                token,
                user,
                gitter_user,
                room,
                uri,
            },
            ActionV1::GitterRoomMembers { token, room, owner } => {
                Action::GitterRoomMembers { token, room, owner }
            }
            ActionV1::FetchMessages {
                token,
                room,
                after,
                limit,
            } => Action::FetchMessages {
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
            } => Action::SendGitter {
                after: cursor(&room),
                token,
                gitter_user,
                room,
                text,
                status,
                reconcile,
                origin,
            },
            ActionV1::OpenStream { room, token } => Action::OpenStream { room, token },
            ActionV1::CloseStream { room } => Action::CloseStream { room },
        }
    }
}
