//! Rooms: a user's rooms, resolving, joining, leaving and member lists
//! (docs/gitter-api.md §3.2 - §3.5).

use super::*;

impl GitterState {
    /// `GET /v1/user/:userId/rooms` and `GET /v1/rooms`: member rooms plus
    /// rooms with unread mentions where the user is not a member
    /// (`roomMember: false`), no pagination (§3.2).
    pub fn rooms_for(&self, caller: &Caller, path_user: &str) -> Result<Vec<Value>, ApiError> {
        self.check_self(caller, path_user)?;
        let uid = &caller.user_id;
        Ok(self
            .rooms
            .values()
            .filter(|r| {
                r.members.contains(uid)
                    || self
                        .unread
                        .get(&(uid.clone(), r.id.clone()))
                        .is_some_and(|u| !u.mention.is_empty())
            })
            .map(|r| self.room_json(r, uid))
            .collect())
    }

    /// Room-scoped `load()`: 400 for a malformed id, 404 unknown, 403 when the
    /// caller may not read it (§7.2, `rooms/index.js`).
    pub(super) fn load_room(&self, caller: &Caller, room_id: &str) -> Result<&Room, ApiError> {
        if !is_object_id(room_id) {
            return Err(ApiError::bad_request(format!("Invalid MongoId: {room_id}")));
        }
        // Mongo reads ObjectIds in either case; ours are stored lowercase.
        let room = self
            .rooms
            .get(&room_id.to_ascii_lowercase())
            .ok_or_else(ApiError::not_found)?;
        let member = room.members.contains(&caller.user_id);
        if !member && (room.one_to_one || !room.public) {
            return Err(ApiError::forbidden());
        }
        Ok(room)
    }

    /// Write permission: members only. (Real Gitter asks `policy.canWrite()`;
    /// its web client makes you press "Join" before you can talk, and a bridge
    /// must not rely on anything looser.)
    pub(super) fn load_room_for_write(
        &self,
        caller: &Caller,
        room_id: &str,
    ) -> Result<&Room, ApiError> {
        let room = self.load_room(caller, room_id)?;
        if !room.members.contains(&caller.user_id) {
            return Err(ApiError::forbidden());
        }
        Ok(room)
    }

    /// A Room with its `group` (show, join and resolve) and `backend` (show and join), §4.2.
    pub(super) fn room_json_with(&self, room: &Room, viewer: &str, backend: bool) -> Value {
        let mut v = self.room_json(room, viewer);
        if let (Some(o), Some(uri)) = (v.as_object_mut(), &room.uri) {
            let org = uri.split('/').next().unwrap_or(uri);
            o.insert("group".into(), group_json(&room.group_id, org));
            if backend {
                let kind = if uri.contains('/') {
                    "GH_REPO"
                } else {
                    "GH_ORG"
                };
                o.insert("backend".into(), json!({ "type": kind, "linkPath": uri }));
            }
        }
        v
    }

    /// `POST /v1/rooms {uri}`: resolve only, never join (2016+ behaviour,
    /// §3.3). Case-insensitive; a username gives the one-to-one room (created
    /// if needed); your own username, unknown or unreadable rooms give 404.
    pub fn resolve_room(
        &mut self,
        caller: &Caller,
        uri: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let uri = uri.map(str::trim).filter(|u| !u.is_empty());
        let Some(uri) = uri else {
            return Err(ApiError::bad_request("Bad Request"));
        };
        let uri = uri.trim_start_matches('/');
        if let Some(room) = self.room_by_uri(uri) {
            if !room.public && !room.members.contains(&caller.user_id) {
                return Err(ApiError::not_found());
            }
            return Ok(self.room_json_with(room, &caller.user_id, false));
        }
        let Some(other) = self.user_by_username(uri).map(|u| u.id.clone()) else {
            return Err(ApiError::not_found());
        };
        if other == caller.user_id {
            return Err(ApiError::not_found());
        }
        let rid = self.one_to_one_room(&caller.user_id, &other, now_ms);
        let room = self.rooms.get(&rid).ok_or_else(ApiError::not_found)?;
        Ok(self.room_json(room, &caller.user_id))
    }

    /// `POST /v1/user/:userId/rooms {id}`: join. Already a member is fine
    /// (§3.3 step 2).
    pub fn join_room(
        &mut self,
        caller: &Caller,
        path_user: &str,
        room_id: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        self.check_self(caller, path_user)?;
        let room_id = match room_id {
            Some(id) if is_object_id(id) => id.to_ascii_lowercase(),
            _ => return Err(ApiError::bad_request("Bad Request")),
        };
        let room = self.rooms.get(&room_id).ok_or_else(ApiError::not_found)?;
        let member = room.members.contains(&caller.user_id);
        if !member && (room.one_to_one || !room.public) {
            return Err(ApiError::forbidden());
        }
        self.add_member(&room_id, &caller.user_id, now_ms);
        if !member {
            self.faye_membership(&room_id, &caller.user_id, true);
        }
        let room = self.rooms.get(&room_id).ok_or_else(ApiError::not_found)?;
        Ok(self.room_json_with(room, &caller.user_id, true))
    }

    /// `DELETE /v1/rooms/:roomId/users/:userId`: leave (or remove, for
    /// admins). Target not a member: 404; not yourself and not admin: 403
    /// (§3.4). `by_username` is `?type=username`.
    pub fn remove_user(
        &mut self,
        caller: &Caller,
        room_id: &str,
        target: &str,
        by_username: bool,
    ) -> Result<Value, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let target_id = if by_username {
            self.user_by_username(target).map(|u| u.id.clone())
        } else {
            Some(target.to_string())
        };
        let Some(target_id) = target_id.filter(|t| room.members.contains(t)) else {
            return Err(ApiError::not_found());
        };
        if target_id != caller.user_id && !room.admins.contains(&caller.user_id) {
            return Err(ApiError::forbidden());
        }
        if room.one_to_one {
            // One-to-one rooms cannot be left, only hidden (§3.4).
            return Err(ApiError::bad_request("One-to-one rooms cannot be left"));
        }
        let room_id = room.id.clone();
        if let Some(room) = self.rooms.get_mut(&room_id) {
            room.members.retain(|m| *m != target_id);
        }
        self.faye_membership(&room_id, &target_id, false);
        Ok(json!({ "success": true }))
    }

    /// `GET /v1/rooms/:roomId/users`: join order, `skip`, `limit` default 30
    /// max 100, `q` filter, `role: "admin"` unless every member is an admin
    /// (§3.5).
    pub fn room_users(
        &self,
        caller: &Caller,
        room_id: &str,
        skip: Option<u64>,
        limit: Option<u64>,
        q: Option<&str>,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let limit = match limit {
            None | Some(0) => 30,
            Some(n) => n.min(100),
        } as usize;
        let all_admin = room.members.iter().all(|m| room.admins.contains(m));
        let q = q.map(str::to_lowercase);
        Ok(room
            .members
            .iter()
            .filter_map(|id| self.users.get(id))
            .filter(|u| {
                q.as_ref().is_none_or(|q| {
                    u.username.to_lowercase().contains(q)
                        || u.display_name.to_lowercase().contains(q)
                })
            })
            .skip(skip.unwrap_or(0) as usize)
            .take(limit)
            .map(|u| {
                let mut v = self.user_json(u, false);
                if !all_admin
                    && room.admins.contains(&u.id)
                    && let Some(o) = v.as_object_mut()
                {
                    o.insert("role".into(), json!("admin"));
                }
                v
            })
            .collect())
    }
}
