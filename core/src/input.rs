//! Everything that happens outside the core, as values: [`Input`].

use serde::{Deserialize, Serialize};

use crate::ids::{
    AsTxnId, EffectId, GitterMessageId, GitterRoomId, GitterUserId, OwnedEventId, OwnedRoomId,
    OwnedUserId, RequestId, Secret,
};

/// One input to [`crate::Bridge::handle`].
#[derive(Clone, Debug, PartialEq)]
pub enum Input {
    /// The driver has started (fresh or restored): the core re-opens streams and re-issues
    /// every effect still in the outbox (Gitter sends marked for reconciliation).
    Startup,
    /// An application-service transaction pushed by the homeserver, parsed into core events.
    /// The driver answers the homeserver 200 only after this step's change set is committed.
    Transaction {
        /// The homeserver's transaction id (retries reuse it).
        txn_id: AsTxnId,
        /// The timeline events of the transaction, in order.
        events: Vec<MatrixEvent>,
    },
    /// A message read from a Gitter room's stream.
    GitterMessage {
        /// The room whose stream delivered it.
        room: GitterRoomId,
        /// The message.
        message: GitterMessage,
    },
    /// A room's stream (re)connected. The core starts a catch-up from the room's cursor.
    StreamConnected {
        /// The room.
        room: GitterRoomId,
    },
    /// A room's stream ended. The adapter reconnects by itself unless the token was revoked.
    StreamDisconnected {
        /// The room.
        room: GitterRoomId,
        /// Why it ended.
        reason: FailureKind,
    },
    /// Something Gitter's realtime API reported besides a new message.
    Realtime(RealtimeEvent),
    /// A person opened `<public_url>/login/<token>` (a GET: link previews do it too, so it
    /// spends nothing; the page asks the person to confirm, naming the Matrix account).
    LoginLinkOpened {
        /// The pending web request to answer.
        request: RequestId,
        /// The token from the path.
        token: String,
    },
    /// The person confirmed the login page (a POST whose CSRF token matched the cookie of
    /// the browser that was shown the page; the web layer checked it).
    LoginLinkConfirmed {
        /// The pending web request to answer.
        request: RequestId,
        /// The token from the path.
        token: String,
    },
    /// Gitter redirected the browser to `/oauth/callback`.
    OAuthCallback {
        /// The pending web request to answer.
        request: RequestId,
        /// `code` query parameter.
        code: Option<Secret>,
        /// `state` query parameter.
        state: Option<String>,
        /// `error` query parameter (the user denied access, for instance).
        error: Option<String>,
        /// The OAuth state the browser was given as a cookie when it confirmed: a callback
        /// whose state is not this browser's is refused (someone else's sign-in).
        browser: Option<String>,
    },
    /// The result of an effect the core emitted earlier.
    EffectDone {
        /// The effect.
        id: EffectId,
        /// What came of it.
        result: EffectResult,
    },
    /// The deadline the core asked for has passed.
    Timer,
}

/// What Gitter's realtime API (Faye, `docs/gitter-api.md` §6.4) reports besides new messages
/// (which come as [`Input::GitterMessage`], from either transport).
#[derive(Clone, Debug, PartialEq)]
pub enum RealtimeEvent {
    /// A message was saved again (`chatMessages` `update`): an edit when `edited_at`
    /// changed; a thread-count change when it did not; a parent with replies "deleted" when
    /// its text and html are empty (§3.9, §3.10).
    MessageUpdated {
        /// The room.
        room: GitterRoomId,
        /// The message as it is now.
        message: GitterMessage,
        /// `editedAt`, absent until the first edit.
        edited_at: Option<String>,
    },
    /// A message was deleted (`chatMessages` `remove`).
    MessageRemoved {
        /// The room.
        room: GitterRoomId,
        /// The message.
        id: GitterMessageId,
    },
    /// Someone joined or was added to the room (`users` `create`; Gitter sends it only for
    /// rooms of 100 members or fewer).
    MemberJoined {
        /// The room.
        room: GitterRoomId,
        /// Who.
        user: GitterUser,
    },
    /// Someone left or was removed from the room (`users` `remove`).
    MemberLeft {
        /// The room.
        room: GitterRoomId,
        /// Who.
        user: GitterUserId,
    },
    /// A member's profile changed (`users` `update`).
    MemberUpdated {
        /// The room.
        room: GitterRoomId,
        /// The member as they are now.
        user: GitterUser,
    },
    /// The room's name or topic changed (room `patch`/`update`); `None` is unchanged.
    RoomChanged {
        /// The room.
        room: GitterRoomId,
        /// The new name.
        name: Option<String>,
        /// The new topic.
        topic: Option<String>,
    },
    /// A room appeared in a user's room list (`user/:id/rooms` `create`): they joined it in
    /// another client, someone opened a one-to-one with them, or (`room_member` false) they
    /// were mentioned in a room they are not in.
    RoomListed {
        /// The Matrix user whose list it is.
        user: OwnedUserId,
        /// The room.
        room: GitterRoom,
    },
    /// A room left a user's room list (`user/:id/rooms` `remove`): they left it, were
    /// removed, or it was deleted.
    RoomUnlisted {
        /// The Matrix user.
        user: OwnedUserId,
        /// The room.
        room: GitterRoomId,
    },
    /// The user's token was revoked (`token/:token` `token_revoked`).
    TokenRevoked {
        /// The Matrix user whose token it was.
        user: OwnedUserId,
    },
}

/// A Matrix event from an AS transaction, reduced to what the bridge acts on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MatrixEvent {
    /// The event id (AS transactions are also deduplicated by it).
    pub event_id: OwnedEventId,
    /// The room.
    pub room_id: OwnedRoomId,
    /// Who sent it.
    pub sender: OwnedUserId,
    /// What it is.
    pub kind: MatrixEventKind,
}

/// The kinds of Matrix events the core distinguishes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub enum MatrixEventKind {
    /// An `m.room.member` state event.
    Member {
        /// The user whose membership changed (the state key).
        target: OwnedUserId,
        /// The new membership.
        membership: Membership,
    },
    /// An `m.room.message` event with a body.
    Message {
        /// The message type.
        msgtype: MsgType,
        /// `body`.
        body: String,
        /// `formatted_body` when `format` is `org.matrix.custom.html`.
        formatted_body: Option<String>,
        /// A thread or reply relation (`m.relates_to`), when any.
        relation: Option<Relation>,
    },
    /// An edit of an earlier message (`m.relates_to.rel_type` `m.replace`), with its
    /// `m.new_content`.
    Edit {
        /// The edited event.
        target: OwnedEventId,
        /// The new message type.
        msgtype: MsgType,
        /// The new `body`.
        body: String,
        /// The new `formatted_body` (HTML), when any.
        formatted_body: Option<String>,
    },
    /// An `m.room.redaction` of an earlier event.
    Redaction {
        /// The redacted event (`redacts`).
        target: OwnedEventId,
    },
    /// An invite (`m.room.member`, membership `invite`) to a room whose invite state shows
    /// it is encrypted already.
    EncryptedInvite {
        /// The invited user (the state key).
        target: OwnedUserId,
    },
    /// An `m.room.encrypted` event: the bridge holds no keys, so it cannot read it.
    Encrypted,
    /// An `m.room.encryption` state event: the room is encrypted from now on (it cannot be
    /// turned off again, spec: "End-to-end encryption").
    EncryptionEnabled,
    /// Anything else (other event types, malformed contents): ignored by the core.
    Other {
        /// The event type, for logs.
        event_type: String,
    },
    /// An `m.room.message` with an unencrypted file (`m.image`, `m.file`, `m.video`,
    /// `m.audio` with an `mxc://` `url`).
    Media {
        /// The file and its caption.
        media: crate::MediaMessage,
        /// A thread or reply relation (`m.relates_to`), when any.
        relation: Option<Relation>,
    },
}

/// What a message answers (spec: "Threading", "Rich replies").
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Relation {
    /// In the thread of `root` (`rel_type: m.thread`).
    Thread {
        /// The thread's root event.
        root: OwnedEventId,
    },
    /// A reply to `to` (`m.in_reply_to`, outside a thread).
    Reply {
        /// The event answered.
        to: OwnedEventId,
    },
}

/// A membership state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Membership {
    /// Invited.
    Invite,
    /// Joined.
    Join,
    /// Left, or was kicked (a kick is a leave set by someone else).
    Leave,
    /// Banned.
    Ban,
    /// Knocking.
    Knock,
}

/// A Matrix message type.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum MsgType {
    /// `m.text`.
    Text,
    /// `m.notice`.
    Notice,
    /// `m.emote`.
    Emote,
    /// Anything else (stickers, locations, encrypted files, ...), not bridged.
    Other(String),
}

/// A Gitter user as the REST API and the stream describe it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitterUser {
    /// The user id.
    pub id: GitterUserId,
    /// The username (`url` is `/` + this).
    pub username: String,
    /// The display name; Gitter falls back to the username.
    pub display_name: String,
    /// The avatar URL, when known.
    pub avatar_url: Option<String>,
}

/// A Gitter room as listed for a user.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitterRoom {
    /// The room id.
    pub id: GitterRoomId,
    /// `name`: `org/room`, or the other user's display name for one-to-one rooms.
    pub name: String,
    /// `uri`: absent for one-to-one rooms.
    pub uri: Option<String>,
    /// `topic` (default empty).
    pub topic: String,
    /// `oneToOne`.
    pub one_to_one: bool,
    /// `userCount`, when present.
    pub user_count: Option<u64>,
    /// `roomMember`: `false` for rooms listed only because of an unread mention.
    pub room_member: Option<bool>,
    /// `avatarUrl`, when present.
    pub avatar_url: Option<String>,
}

/// A Gitter chat message.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitterMessage {
    /// The message id.
    pub id: GitterMessageId,
    /// Raw markdown text.
    pub text: String,
    /// Server-rendered HTML (sanitised by the core before it reaches Matrix).
    pub html: String,
    /// `status`: a `/me` message.
    pub status: bool,
    /// `sent`, ISO-8601.
    pub sent: String,
    /// The author.
    pub from: GitterUser,
    /// `parentId` for thread replies.
    pub parent_id: Option<GitterMessageId>,
    /// `mentions`: who the message names (§4.3).
    pub mentions: Vec<GitterMention>,
}

/// One entry of a Gitter message's `mentions` (§4.3).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GitterMention {
    /// The name written after `@` (`/all` for everyone).
    pub screen_name: String,
    /// The user named, when the name matched one.
    pub user_id: Option<GitterUserId>,
    /// A group mention (`@/all`), which names everyone in the room.
    pub group: bool,
}

/// What came of an effect.
pub type EffectResult = Result<EffectOutput, Failure>;

/// The data a successful effect returns, by kind of effect.
#[derive(Clone, Debug, PartialEq)]
pub enum EffectOutput {
    /// Done; nothing to report.
    Done,
    /// A Matrix room was created.
    RoomCreated(OwnedRoomId),
    /// A file was uploaded to the homeserver ([`crate::MatrixCall::MirrorMedia`]).
    Uploaded(crate::Uploaded),
    /// A Matrix event was sent.
    EventSent(OwnedEventId),
    /// The members (joined or invited) of a Matrix room.
    MatrixMembers(Vec<OwnedUserId>),
    /// An OAuth code was exchanged for a token.
    Token(Secret),
    /// A Gitter user (the token's own).
    GitterUser(GitterUser),
    /// A list of Gitter rooms.
    GitterRooms(Vec<GitterRoom>),
    /// One Gitter room (resolved or joined).
    GitterRoom(GitterRoom),
    /// Gitter messages, oldest first.
    GitterMessages(Vec<GitterMessage>),
    /// What a reconciling send read: the author's messages after the send's `after`, oldest
    /// first, and the newest message id the read saw (by anyone), after which a new post
    /// would come.
    Reconciled {
        /// The author's messages.
        mine: Vec<GitterMessage>,
        /// The newest id read, if any.
        newest: Option<GitterMessageId>,
    },
    /// One Gitter message (a send's result).
    GitterMessage(GitterMessage),
    /// Members of a Gitter room.
    GitterUsers(Vec<GitterUser>),
    /// A batch of pruning ([`crate::StoreCall::PruneMappings`]) is done.
    Pruned {
        /// Mappings deleted by this batch.
        removed: u64,
        /// Where the next batch goes on, when the store was not visited to its end.
        resume: Option<Vec<u8>>,
    },
    /// A mapping looked up in the store ([`crate::StoreCall::MappingByGitterId`],
    /// [`crate::StoreCall::MappingByEvent`]); `None` when the store has none (never seen, or
    /// pruned by retention).
    Mapping(Option<crate::MessageRecord>),
}

/// Why an effect failed, after the adapter's own retries of transient faults.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind:?}: {message}")]
pub struct Failure {
    /// Whose fault, and whether it can pass.
    pub kind: FailureKind,
    /// A human-readable detail for logs (never a secret).
    pub message: String,
}

impl Failure {
    /// Builds a failure.
    pub fn new(kind: FailureKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }
}

/// The kinds of failure the core tells apart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FailureKind {
    /// Network errors, 5xx, time-outs: the remote side may recover.
    Transient,
    /// Still rate-limited after the adapter waited and retried.
    RateLimited,
    /// The thing does not exist (Gitter 404, Matrix `M_NOT_FOUND`).
    NotFound,
    /// Not allowed (Gitter 403, Matrix `M_FORBIDDEN`).
    Forbidden,
    /// The Gitter token is no longer valid (Gitter 401): the login is dead.
    TokenRevoked,
    /// The remote refused the request as invalid (400), or answered something unreadable.
    Rejected,
}

impl FailureKind {
    /// Its name in logs and metric labels (snake_case, stable).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Transient => "transient",
            FailureKind::RateLimited => "rate_limited",
            FailureKind::NotFound => "not_found",
            FailureKind::Forbidden => "forbidden",
            FailureKind::TokenRevoked => "token_revoked",
            FailureKind::Rejected => "rejected",
        }
    }
}

impl std::fmt::Display for FailureKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
