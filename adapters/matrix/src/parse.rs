//! Parsing of AS transaction bodies into the core's [`MatrixEvent`]s.
//!
//! The body is read as loose JSON first and each event is reduced on its own, so that one odd
//! event never fails the transaction: the homeserver queues every later event behind a
//! transaction that did not get a 200 (Synapse's `_Recoverer` retries it forever with backoff
//! up to 512 s), so a non-200 for one bad event would stall the whole bridge.
//!
//! Shape seen from Synapse 1.163 (see `fixtures/matrix/`): `events` (client-format events
//! that still carry the legacy `user_id` and `age` keys next to `sender` and
//! `unsigned.age`), `ephemeral` (with `receive_ephemeral: true`) and
//! `de.sorunome.msc2409.to_device`. Keys the bridge does not use are ignored.

use gitter_bridge_core::{
    MatrixEvent, MatrixEventKind, MediaKind, MediaMessage, Membership, MsgType, OwnedEventId,
    OwnedRoomId, OwnedUserId, Relation,
};
use serde_json::{Map, Value};

/// The parsed contents of one transaction.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ParsedTransaction {
    /// The timeline events, in order (events that could not be identified are left out).
    pub events: Vec<MatrixEvent>,
    /// Events left out because they lacked a valid `event_id`, `room_id`, `sender` or `type`.
    pub skipped: usize,
    /// Ephemeral events received (typing, receipts, presence): accepted and ignored.
    pub ephemeral: usize,
}

/// Why a transaction body was refused as a whole.
#[derive(Debug, thiserror::Error)]
pub enum TransactionParseError {
    /// Not JSON at all (`400 M_NOT_JSON`).
    #[error("the homeserver sent a transaction body that is not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    /// JSON, but not a transaction (`400 M_BAD_JSON`).
    #[error("the homeserver sent a transaction of the wrong shape: {0}")]
    BadJson(String),
}

impl TransactionParseError {
    /// The Matrix `errcode` for the 400 answer.
    pub fn errcode(&self) -> &'static str {
        match self {
            TransactionParseError::NotJson(_) => "M_NOT_JSON",
            TransactionParseError::BadJson(_) => "M_BAD_JSON",
        }
    }
}

/// Why one event was left out of a transaction.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("event left out: {0}")]
pub struct SkippedEvent(pub String);

/// Parses a `PUT /transactions/{txnId}` body.
pub fn parse_transaction(body: &[u8]) -> Result<ParsedTransaction, TransactionParseError> {
    let value: Value = serde_json::from_slice(body).map_err(TransactionParseError::NotJson)?;
    let Value::Object(top) = value else {
        return Err(TransactionParseError::BadJson(
            "the body is not a JSON object".to_owned(),
        ));
    };
    // `events` is the one required key (spec: application-service-api, PUT /transactions).
    let events = match top.get("events") {
        Some(Value::Array(events)) => events,
        Some(_) => {
            return Err(TransactionParseError::BadJson(
                "`events` is not an array".to_owned(),
            ));
        }
        None => {
            return Err(TransactionParseError::BadJson(
                "`events` is missing".to_owned(),
            ));
        }
    };

    let mut parsed = ParsedTransaction::default();
    for (index, raw) in events.iter().enumerate() {
        match parse_event(raw) {
            Ok(event) => parsed.events.push(event),
            Err(why) => {
                tracing::warn!(index, reason = %why.0, "skipping an unidentifiable event in an AS transaction");
                parsed.skipped += 1;
            }
        }
    }
    // `ephemeral` is the stable name (spec v1.13); the MSC2409 name is what older Synapse
    // versions and `de.sorunome.msc2409.push_ephemeral` registrations get.
    for key in ["ephemeral", "de.sorunome.msc2409.ephemeral"] {
        if let Some(Value::Array(list)) = top.get(key) {
            parsed.ephemeral += list.len();
        }
    }
    Ok(parsed)
}

/// Reduces one client-format event to a [`MatrixEvent`].
///
/// Fails only when the event cannot be identified (no valid `event_id`, `room_id`, `sender`
/// or `type`); an event whose content is odd becomes [`MatrixEventKind::Other`].
pub fn parse_event(raw: &Value) -> Result<MatrixEvent, SkippedEvent> {
    let Value::Object(event) = raw else {
        return Err(SkippedEvent("not a JSON object".to_owned()));
    };
    let event_id: OwnedEventId = id_field(event, "event_id")?;
    let room_id: OwnedRoomId = id_field(event, "room_id")?;
    let sender: OwnedUserId = id_field(event, "sender")?;
    let event_type = str_field(event, "type")
        .ok_or_else(|| SkippedEvent(format!("{event_id}: `type` is missing")))?
        .to_owned();

    let kind = match event.get("content") {
        Some(Value::Object(content)) => kind_of(&event_type, event, content),
        _ => None,
    }
    .unwrap_or(MatrixEventKind::Other { event_type });

    Ok(MatrixEvent {
        event_id,
        room_id,
        sender,
        kind,
    })
}

/// The kind of an identified event, or `None` for [`MatrixEventKind::Other`].
fn kind_of(
    event_type: &str,
    event: &Map<String, Value>,
    content: &Map<String, Value>,
) -> Option<MatrixEventKind> {
    match event_type {
        "m.room.member" => {
            let target = OwnedUserId::try_from(str_field(event, "state_key")?).ok()?;
            let membership = match str_field(content, "membership")? {
                "invite" => Membership::Invite,
                "join" => Membership::Join,
                "leave" => Membership::Leave,
                "ban" => Membership::Ban,
                "knock" => Membership::Knock,
                _ => return None,
            };
            if membership == Membership::Invite && invited_to_encrypted(event) {
                return Some(MatrixEventKind::EncryptedInvite { target });
            }
            Some(MatrixEventKind::Member { target, membership })
        }
        "m.room.message" => {
            // An edit (spec: "Event replacements", `rel_type: m.replace`) carries the new
            // content in `m.new_content`; its own `body` is a `* ` fallback for clients
            // without edits, never bridged as a message of its own.
            let relation = content.get("m.relates_to").and_then(Value::as_object);
            if let Some(relation) = relation
                && str_field(relation, "rel_type") == Some("m.replace")
            {
                let target = OwnedEventId::try_from(str_field(relation, "event_id")?).ok()?;
                let new = content.get("m.new_content").and_then(Value::as_object)?;
                let (msgtype, body, formatted_body) = message_content(new)?;
                return Some(MatrixEventKind::Edit {
                    target,
                    msgtype,
                    body,
                    formatted_body,
                });
            }
            let relation = relation.and_then(relation_of);
            if let Some(media) = media_content(content) {
                return Some(MatrixEventKind::Media { media, relation });
            }
            let (msgtype, body, formatted_body) = message_content(content)?;
            Some(MatrixEventKind::Message {
                msgtype,
                body,
                formatted_body,
                relation,
            })
        }
        // The bridge has no keys (it is not an E2EE client): the core tells the person.
        "m.room.encrypted" => Some(MatrixEventKind::Encrypted),
        "m.room.encryption" if event.contains_key("state_key") => {
            Some(MatrixEventKind::EncryptionEnabled)
        }
        // `redacts` is a top-level key up to room version 10 and a content key from 11 on
        // (spec: room version 11, "Moving the redacts key").
        "m.room.redaction" => {
            let target = str_field(content, "redacts").or_else(|| str_field(event, "redacts"))?;
            let target = OwnedEventId::try_from(target).ok()?;
            Some(MatrixEventKind::Redaction { target })
        }
        _ => None,
    }
}

/// A thread (`rel_type: m.thread`, whose `m.in_reply_to` only says where in the thread) or a
/// plain reply (`m.in_reply_to`) (spec: "Threading", "Rich replies").
fn relation_of(relation: &Map<String, Value>) -> Option<Relation> {
    let event = |key: &str, map: &Map<String, Value>| {
        str_field(map, key).and_then(|id| OwnedEventId::try_from(id).ok())
    };
    if str_field(relation, "rel_type") == Some("m.thread") {
        return event("event_id", relation).map(|root| Relation::Thread { root });
    }
    let reply = relation.get("m.in_reply_to").and_then(Value::as_object)?;
    event("event_id", reply).map(|to| Relation::Reply { to })
}

/// The message type, `body` and HTML `formatted_body` of a message content.
fn message_content(content: &Map<String, Value>) -> Option<(MsgType, String, Option<String>)> {
    let msgtype = match str_field(content, "msgtype")? {
        "m.text" => MsgType::Text,
        "m.notice" => MsgType::Notice,
        "m.emote" => MsgType::Emote,
        other => MsgType::Other(other.to_owned()),
    };
    let body = str_field(content, "body")?.to_owned();
    let formatted_body = match str_field(content, "format") {
        Some("org.matrix.custom.html") => str_field(content, "formatted_body").map(str::to_owned),
        _ => None,
    };
    Some((msgtype, body, formatted_body))
}

/// A file message (spec: "m.image", "m.file", "m.video", "m.audio"): its `mxc://` `url`, and
/// its name and caption (spec v1.10, "Media captions": with a `filename` that differs from
/// `body`, the `body` is a caption). An encrypted file (`file` instead of `url`) is not one:
/// the bridge holds no keys.
fn media_content(content: &Map<String, Value>) -> Option<MediaMessage> {
    let kind = match str_field(content, "msgtype")? {
        "m.image" => MediaKind::Image,
        "m.file" => MediaKind::File,
        "m.video" => MediaKind::Video,
        "m.audio" => MediaKind::Audio,
        _ => return None,
    };
    let uri = ruma::OwnedMxcUri::from(str_field(content, "url")?);
    let (server, media_id) = uri.parts().ok()?;
    let body = str_field(content, "body").unwrap_or_default();
    let (name, caption) = match str_field(content, "filename") {
        Some(filename) if !filename.is_empty() && filename != body => (
            filename.to_owned(),
            Some(body.to_owned()).filter(|b| !b.is_empty()),
        ),
        _ => (body.to_owned(), None),
    };
    let size = content
        .get("info")
        .and_then(|i| i.get("size"))
        .and_then(Value::as_u64);
    Some(MediaMessage {
        kind,
        server: server.to_string(),
        media_id: media_id.to_owned(),
        name,
        caption,
        size,
    })
}

/// Whether an invite's stripped room state (`unsigned.invite_room_state`, which Synapse
/// keeps on invites it sends to application services; matrix-org/matrix-spec#848) shows an
/// `m.room.encryption` event: the room is encrypted before the bot ever joins it.
fn invited_to_encrypted(event: &Map<String, Value>) -> bool {
    event
        .get("unsigned")
        .and_then(|u| u.get("invite_room_state"))
        .and_then(Value::as_array)
        .is_some_and(|state| {
            state
                .iter()
                .any(|e| e.get("type").and_then(Value::as_str) == Some("m.room.encryption"))
        })
}

fn str_field<'a>(map: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    map.get(key).and_then(Value::as_str)
}

fn id_field<T: TryFrom<String>>(map: &Map<String, Value>, key: &str) -> Result<T, SkippedEvent> {
    let s = str_field(map, key).ok_or_else(|| SkippedEvent(format!("`{key}` is missing")))?;
    T::try_from(s.to_owned()).map_err(|_| SkippedEvent(format!("`{key}` is not a valid id: {s:?}")))
}
