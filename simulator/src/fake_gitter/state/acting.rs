//! Acting as a Gitter user, for tests and scenarios: posting, replying, editing, joining and
//! leaving by username.

use super::*;

impl GitterState {
    /// A `Caller` for `username` as if it used the configured OAuth client.
    pub fn caller_for(&mut self, username: &str) -> Result<Caller, ApiError> {
        let user_id = self
            .user_by_username(username)
            .map(|u| u.id.clone())
            .ok_or_else(ApiError::not_found)?;
        let client_id = self.config.client_id.clone();
        let token = self.token_for(&user_id, &client_id);
        Ok(Caller {
            user_id,
            client_id,
            token,
        })
    }

    pub(super) fn room_id_of(&self, room: &str) -> Result<String, ApiError> {
        self.room_ref(room)
            .map(|r| r.id.clone())
            .ok_or_else(ApiError::not_found)
    }

    /// Post as `username` into a room given by id or uri.
    pub fn post_as(
        &mut self,
        username: &str,
        room: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), false, None, now_ms)
    }

    /// Post a `/me` status message as `username`.
    pub fn post_status_as(
        &mut self,
        username: &str,
        room: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), true, None, now_ms)
    }

    /// Reply in a thread as `username`.
    pub fn reply_as(
        &mut self,
        username: &str,
        room: &str,
        parent_id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.post_message(&caller, &rid, Some(text), false, Some(parent_id), now_ms)
    }

    /// Edit as `username`.
    pub fn edit_as(
        &mut self,
        username: &str,
        room: &str,
        msg_id: &str,
        text: &str,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.edit_message(&caller, &rid, msg_id, Some(text), now_ms)
    }

    /// Delete as `username`.
    pub fn delete_as(&mut self, username: &str, room: &str, msg_id: &str) -> Result<(), ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.delete_message(&caller, &rid, msg_id)
    }

    /// Join as `username`.
    pub fn join_as(&mut self, username: &str, room: &str, now_ms: u64) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        self.join_room(&caller, "me", Some(&rid), now_ms)
    }

    /// Leave as `username`.
    pub fn leave_as(&mut self, username: &str, room: &str) -> Result<Value, ApiError> {
        let caller = self.caller_for(username)?;
        let rid = self.room_id_of(room)?;
        let uid = caller.user_id.clone();
        self.remove_user(&caller, &rid, &uid, false)
    }

    /// The room's main-timeline messages (no thread replies), oldest first,
    /// as a member would fetch them, serialized without `unread`.
    pub fn messages_of(&self, room: &str) -> Result<Vec<Value>, ApiError> {
        let rid = self.room_id_of(room)?;
        Ok(self
            .room_messages(&rid)
            .into_iter()
            .map(|m| self.message_json(m, None))
            .collect())
    }
}
