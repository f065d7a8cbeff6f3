//! serde models of Gitter's JSON, and their conversion into the core's types.
//!
//! They follow docs/gitter-api.md §4 and its typing pitfalls (§4.6): every field the server may
//! leave out is optional or defaulted, unknown fields are ignored (no `deny_unknown_fields`,
//! the server grew fields over time), `meta` may be `[]` or `{}`, `editedAt` may be absent,
//! `null` or a string, a mention's `userId` may be absent, `issues[].number` is a string (a
//! number is accepted too), and `fromUser` may be a bare user id (`lookups=user`).

use gitter_bridge_core::{
    GitterMessage, GitterMessageId, GitterRoom, GitterRoomId, GitterUser, GitterUserId,
};
use serde::{Deserialize, Deserializer, Serialize};

/// A Gitter user (§4.1).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct User {
    /// ObjectId.
    pub id: String,
    /// The username.
    pub username: String,
    /// Display name (the server falls back to the username; absent in `lean` forms).
    pub display_name: Option<String>,
    /// `"/" + username`.
    pub url: Option<String>,
    /// Gitter avatar service URL (2016+).
    pub avatar_url: Option<String>,
    /// 60 px avatar.
    pub avatar_url_small: Option<String>,
    /// 128 px avatar.
    pub avatar_url_medium: Option<String>,
    /// `"admin"` in room member lists.
    pub role: Option<String>,
    /// Model version (a number).
    pub v: Option<u64>,
    /// Gravatar version (a string).
    pub gv: Option<String>,
}

/// `fromUser`: a full user, or its id when `lookups=user` was asked for (§3.6).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum FromUser {
    /// The usual full user object.
    User(Box<User>),
    /// Only the id.
    Id(String),
}

impl Default for FromUser {
    fn default() -> Self {
        FromUser::Id(String::new())
    }
}

/// A Gitter room (§4.2).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Room {
    /// ObjectId.
    pub id: String,
    /// `org/room`, or the other user's display name for one-to-one rooms.
    pub name: String,
    /// Topic (`""` by default).
    pub topic: Option<String>,
    /// Absent for one-to-one rooms.
    pub uri: Option<String>,
    /// One-to-one room.
    pub one_to_one: bool,
    /// Total members.
    pub user_count: Option<u64>,
    /// The other party of a one-to-one room.
    pub user: Option<User>,
    /// Whether the current user is a member (`false`: listed for an unread mention).
    pub room_member: Option<bool>,
    /// Unread count for the current user.
    pub unread_items: Option<u64>,
    /// Unread mentions for the current user.
    pub mentions: Option<u64>,
    /// `"/" + uri`.
    pub url: Option<String>,
    /// Room avatar.
    pub avatar_url: Option<String>,
}

/// One entry of `urls`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct UrlRef {
    /// The URL.
    pub url: String,
}

/// One entry of `mentions` (§4.3).
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Mention {
    /// The mentioned name.
    pub screen_name: Option<String>,
    /// Absent when the name matched no user.
    pub user_id: Option<String>,
    /// Group mentions (`@/all`).
    pub user_ids: Vec<String>,
    /// A group mention.
    pub group: Option<bool>,
    /// An announcement.
    pub announcement: Option<bool>,
}

/// One entry of `issues`.
#[derive(Clone, Debug, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct Issue {
    /// The issue number: a **string** on the wire (`{"number":"11"}`).
    #[serde(deserialize_with = "string_or_number")]
    pub number: Option<String>,
    /// A cross-repo reference, if the server ever sends one [?].
    pub repo: Option<String>,
}

/// A chat message (§4.3); also each line of the stream (§5.1).
#[derive(Clone, Debug, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Message {
    /// ObjectId.
    pub id: String,
    /// Raw markdown (`""` when blanked).
    pub text: String,
    /// Server-rendered HTML.
    pub html: String,
    /// A `/me` message (present only when true).
    pub status: bool,
    /// ISO-8601 send time.
    pub sent: String,
    /// ISO-8601 edit time: absent, `null` or a string.
    pub edited_at: Option<String>,
    /// Thread parent.
    pub parent_id: Option<String>,
    /// Replies of a thread parent.
    pub thread_message_count: Option<u64>,
    /// The author.
    pub from_user: FromUser,
    /// Unread for the current user (absent on streams).
    pub unread: Option<bool>,
    /// Read count.
    pub read_by: Option<u64>,
    /// Links.
    pub urls: Vec<UrlRef>,
    /// Mentions.
    pub mentions: Vec<Mention>,
    /// Issue references.
    pub issues: Vec<Issue>,
    /// "Not used for anything": `[]` (2020) or `{}` (2014), kept opaque.
    pub meta: serde_json::Value,
    /// Model version (goes up on every save; not an edit counter).
    pub v: Option<u64>,
}

/// `number` as a string, whether it came as `"11"` or `11`.
fn string_or_number<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(match Option::<serde_json::Value>::deserialize(d)? {
        Some(serde_json::Value::String(s)) => Some(s),
        Some(serde_json::Value::Number(n)) => Some(n.to_string()),
        _ => None,
    })
}

/// Either shape of the current user (§3.1): `/v1/user/me` gives an object, `/v1/user` an
/// array with one user.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum OneOrMany {
    One(Box<User>),
    Many(Vec<User>),
}

impl OneOrMany {
    pub(crate) fn into_first(self) -> Option<User> {
        match self {
            OneOrMany::One(u) => Some(*u),
            OneOrMany::Many(v) => v.into_iter().next(),
        }
    }
}

impl From<User> for GitterUser {
    fn from(u: User) -> Self {
        // Gitter falls back to the username itself; do the same when the field is missing
        // (lean objects) or empty.
        let display_name = u
            .display_name
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| u.username.clone());
        GitterUser {
            id: GitterUserId::new(u.id),
            username: u.username,
            display_name,
            avatar_url: u.avatar_url.or(u.avatar_url_medium).or(u.avatar_url_small),
        }
    }
}

impl From<Room> for GitterRoom {
    fn from(r: Room) -> Self {
        GitterRoom {
            id: GitterRoomId::new(r.id),
            name: r.name,
            uri: r.uri.filter(|u| !u.is_empty()),
            topic: r.topic.unwrap_or_default(),
            one_to_one: r.one_to_one,
            user_count: r.user_count,
            room_member: r.room_member,
            avatar_url: r.avatar_url,
        }
    }
}

impl Message {
    /// The author's id, whichever shape `fromUser` had.
    pub fn from_user_id(&self) -> &str {
        match &self.from_user {
            FromUser::User(u) => &u.id,
            FromUser::Id(id) => id,
        }
    }

    /// `sent` as ms since the Unix epoch, when it parses.
    pub fn sent_ms(&self) -> Option<u64> {
        crate::time::parse_iso_ms(&self.sent)
    }

    /// Converts into the core's message. `None` when the message lacks what the core needs
    /// (an id, or an author object).
    pub fn into_core(self) -> Option<GitterMessage> {
        let from = match self.from_user {
            FromUser::User(u) if !u.id.is_empty() => GitterUser::from(*u),
            _ => return None,
        };
        if self.id.is_empty() {
            return None;
        }
        Some(GitterMessage {
            id: GitterMessageId::new(self.id),
            text: self.text,
            html: self.html,
            status: self.status,
            sent: self.sent,
            from,
            parent_id: self.parent_id.map(GitterMessageId::new),
            mentions: self
                .mentions
                .into_iter()
                .filter_map(|m| {
                    Some(gitter_bridge_core::GitterMention {
                        screen_name: m.screen_name?,
                        user_id: m.user_id.map(gitter_bridge_core::GitterUserId::new),
                        group: m.group.unwrap_or(false),
                    })
                })
                .collect(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tolerates_shapes() {
        let m: Message = serde_json::from_str(
            r#"{"id":"a","text":"t","html":"h","sent":"2014-03-25T12:09:15.292Z","editedAt":null,
                "fromUser":"5330521e20d939a3be000018","meta":{},"issues":[{"number":11}],
                "mentions":[{"screenName":"x"}],"brandNew":{"x":1}}"#,
        )
        .unwrap();
        assert_eq!(m.edited_at, None);
        assert_eq!(m.from_user_id(), "5330521e20d939a3be000018");
        assert_eq!(m.issues[0].number.as_deref(), Some("11"));
        assert_eq!(m.mentions[0].user_id, None);
        assert!(m.clone().into_core().is_none(), "no author object");
    }

    #[test]
    fn display_name_falls_back_to_username() {
        let u: User = serde_json::from_str(r#"{"id":"1","username":"bob"}"#).unwrap();
        let g = GitterUser::from(u);
        assert_eq!(g.display_name, "bob");
        assert_eq!(g.avatar_url, None);
    }
}
