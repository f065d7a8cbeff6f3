//! The JSON of users, rooms and messages as Gitter serializes them (docs/gitter-api.md §4;
//! absent fields are left out, never null).

use super::*;

impl GitterState {
    /// A User. `providers` only for `/v1/user` and `/v1/user/me` (§4.1).
    pub fn user_json(&self, user: &User, providers: bool) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(user.id));
        m.insert("username".into(), json!(user.username));
        m.insert("displayName".into(), json!(user.display_name));
        m.insert("url".into(), json!(format!("/{}", user.username)));
        // Gitter's avatar service, or the fake's own files once it listens (the bridge
        // downloads avatars, and the tests have no outside network).
        let (avatar, small, medium) = match &self.files_base {
            Some(base) => {
                let file = format!("{base}/avatar-{}.png", user.username);
                (file.clone(), file.clone(), file)
            }
            None => (
                format!("https://avatars-05.gitter.im/gh/uv/4/{}", user.username),
                format!(
                    "https://avatars.githubusercontent.com/{}?s=60",
                    user.username
                ),
                format!(
                    "https://avatars.githubusercontent.com/{}?s=128",
                    user.username
                ),
            ),
        };
        m.insert("avatarUrl".into(), json!(avatar));
        m.insert("avatarUrlSmall".into(), json!(small));
        m.insert("avatarUrlMedium".into(), json!(medium));
        if providers {
            m.insert("providers".into(), json!(["github"]));
        }
        m.insert("v".into(), json!(user.v));
        m.insert("gv".into(), json!("4"));
        Value::Object(m)
    }

    pub(super) fn user_json_by_id(&self, id: &str) -> Value {
        match self.users.get(id) {
            Some(u) => self.user_json(u, false),
            None => json!({ "id": id, "removed": true }),
        }
    }

    /// A Room as seen by `viewer` (§4.2).
    pub fn room_json(&self, room: &Room, viewer: &str) -> Value {
        let mut m = Map::new();
        let other = room
            .one_to_one
            .then(|| {
                room.members
                    .iter()
                    .find(|m| *m != viewer)
                    .and_then(|id| self.users.get(id))
            })
            .flatten();
        let name = match other {
            Some(u) => u.display_name.clone(),
            None => room.name.clone(),
        };
        let unread = self.unread.get(&(viewer.to_string(), room.id.clone()));
        m.insert("id".into(), json!(room.id));
        m.insert("name".into(), json!(name));
        m.insert("topic".into(), json!(room.topic));
        // A one-to-one room shows the other user's avatar; the fake's own files once it
        // listens (see `user_json`).
        let avatar = match (other, &self.files_base) {
            (Some(u), Some(base)) => format!("{base}/avatar-{}.png", u.username),
            (None, Some(base)) => format!("{base}/group-{}.png", room.group_id),
            (Some(u), None) => format!("https://avatars-05.gitter.im/gh/uv/4/{}", u.username),
            (None, None) => format!("https://avatars-05.gitter.im/group/iv/4/{}", room.group_id),
        };
        m.insert("avatarUrl".into(), json!(avatar));
        if let Some(uri) = &room.uri {
            m.insert("uri".into(), json!(uri));
        }
        m.insert("oneToOne".into(), json!(room.one_to_one));
        m.insert("userCount".into(), json!(room.members.len()));
        if let Some(u) = other {
            m.insert("user".into(), self.user_json(u, false));
        }
        m.insert(
            "unreadItems".into(),
            json!(unread.map_or(0, |u| u.chat.len())),
        );
        m.insert(
            "mentions".into(),
            json!(unread.map_or(0, |u| u.mention.len())),
        );
        if let Some(t) = self.last_access.get(&(viewer.to_string(), room.id.clone())) {
            m.insert("lastAccessTime".into(), json!(iso_ms(*t)));
        }
        let settings = self.settings.get(&(viewer.to_string(), room.id.clone()));
        if let Some(f) = settings.and_then(|s| s.favourite) {
            m.insert("favourite".into(), json!(f));
        }
        let lurk = settings
            .and_then(|s| s.mode.as_deref())
            .is_some_and(|mode| mode != "all");
        m.insert("lurk".into(), json!(lurk));
        let url = match (other, &room.uri) {
            (Some(u), _) => format!("/{}", u.username),
            (None, Some(uri)) => format!("/{uri}"),
            (None, None) => "/".to_string(),
        };
        m.insert("url".into(), json!(url));
        let github_type = if room.one_to_one {
            "ONETOONE"
        } else if room.uri.as_deref().is_some_and(|u| u.contains('/')) {
            "REPO_CHANNEL"
        } else {
            "ORG"
        };
        m.insert("githubType".into(), json!(github_type));
        if !room.one_to_one {
            m.insert(
                "security".into(),
                json!(if room.public { "PUBLIC" } else { "PRIVATE" }),
            );
        }
        m.insert("noindex".into(), json!(false));
        m.insert("tags".into(), json!([]));
        m.insert(
            "permissions".into(),
            json!({ "admin": room.admins.contains(viewer) }),
        );
        m.insert(
            "roomMember".into(),
            json!(room.members.iter().any(|x| x == viewer)),
        );
        if !room.one_to_one {
            m.insert("groupId".into(), json!(room.group_id));
        }
        m.insert("public".into(), json!(room.public && !room.one_to_one));
        m.insert("v".into(), json!(room.v));
        Value::Object(m)
    }

    /// A Message (§4.3). `viewer` adds `unread`; stream payloads pass `None`
    /// (realtime payloads have no `unread`).
    pub fn message_json(&self, msg: &Message, viewer: Option<&str>) -> Value {
        let mut m = Map::new();
        m.insert("id".into(), json!(msg.id));
        m.insert("text".into(), json!(msg.text));
        m.insert("html".into(), json!(msg.rendered.html));
        if msg.status {
            m.insert("status".into(), json!(true));
        }
        m.insert("sent".into(), json!(iso_ms(msg.sent_ms)));
        if let Some(e) = msg.edited_ms {
            m.insert("editedAt".into(), json!(iso_ms(e)));
        }
        if let Some(p) = &msg.parent_id {
            m.insert("parentId".into(), json!(p));
        }
        if msg.thread_count > 0 {
            m.insert("threadMessageCount".into(), json!(msg.thread_count));
        }
        m.insert("fromUser".into(), self.user_json_by_id(&msg.from_user));
        if let Some(viewer) = viewer {
            let unread = self
                .unread
                .get(&(viewer.to_string(), msg.room_id.clone()))
                .is_some_and(|u| u.chat.contains(&msg.id));
            m.insert("unread".into(), json!(unread));
        }
        m.insert("readBy".into(), json!(msg.read_by.len()));
        m.insert(
            "urls".into(),
            Value::Array(
                msg.rendered
                    .urls
                    .iter()
                    .map(|u| json!({ "url": u }))
                    .collect(),
            ),
        );
        m.insert(
            "mentions".into(),
            Value::Array(
                msg.rendered
                    .mentions
                    .iter()
                    .map(|men| {
                        let mut o = Map::new();
                        o.insert("screenName".into(), json!(men.screen_name));
                        if let Some(id) = &men.user_id {
                            o.insert("userId".into(), json!(id));
                        }
                        if men.group {
                            let members = self
                                .rooms
                                .get(&msg.room_id)
                                .map(|r| r.members.clone())
                                .unwrap_or_default();
                            o.insert("userIds".into(), json!(members));
                            o.insert("group".into(), json!(true));
                            o.insert("announcement".into(), json!(true));
                        } else {
                            o.insert("userIds".into(), json!([]));
                        }
                        Value::Object(o)
                    })
                    .collect(),
            ),
        );
        m.insert(
            "issues".into(),
            Value::Array(
                msg.rendered
                    .issues
                    .iter()
                    .map(|n| json!({ "number": n }))
                    .collect(),
            ),
        );
        m.insert("meta".into(), json!([]));
        m.insert("v".into(), json!(msg.v));
        Value::Object(m)
    }
}
