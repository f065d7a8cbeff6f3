//! Messages: paging, posting, editing, deleting and threads (docs/gitter-api.md §3.6 -
//! §3.10).

use super::*;

impl GitterState {
    /// `GET /v1/rooms/:roomId/chatMessages` (§3.6): always oldest first.
    pub fn list_messages(
        &self,
        caller: &Caller,
        room_id: &str,
        q: &MessageQuery,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let skip = q.skip.unwrap_or(0);
        if skip > MAX_SKIP {
            return Err(ApiError::bad_request(
                "Skip is limited to 5000 items. Please use beforeId rather than skip. See https://developer.gitter.im",
            ));
        }
        let limit = clamp_limit(q.limit);
        let include_threads = q.include_threads.unwrap_or(false);
        let empty = BTreeMap::new();
        let all = self.messages.get(&room.id).unwrap_or(&empty);
        let visible = |m: &&Message| include_threads || m.parent_id.is_none();
        let viewer = Some(caller.user_id.as_str());

        if let Some(around) = &q.around_id
            && let Some(anchor) = all.get(around)
        {
            // Centre on the parent when the anchor is a thread reply, and
            // append the reply at the end.
            let centre = anchor
                .parent_id
                .clone()
                .unwrap_or_else(|| anchor.id.clone());
            let half = limit / 2;
            let mut older: Vec<&Message> = all
                .range(..=centre.clone())
                .map(|(_, m)| m)
                .rev()
                .filter(visible)
                .take(half)
                .collect();
            older.reverse();
            let newer = all
                .range((
                    std::ops::Bound::Excluded(centre),
                    std::ops::Bound::Unbounded,
                ))
                .map(|(_, m)| m)
                .filter(visible)
                .take(half);
            let mut out: Vec<&Message> = older.into_iter().chain(newer).collect();
            if anchor.parent_id.is_some() && !out.iter().any(|m| m.id == anchor.id) {
                out.push(anchor);
            }
            return Ok(out
                .into_iter()
                .map(|m| {
                    let mut v = self.message_json(m, viewer);
                    if m.id == anchor.id
                        && let Some(o) = v.as_object_mut()
                    {
                        o.insert("initial".into(), json!(true));
                    }
                    v
                })
                .collect());
        }

        // An aroundId that names no message of the room gives the latest 50,
        // whatever else was asked (§3.6).
        let page = if q.around_id.is_some() {
            page_messages(all, None, None, 0, clamp_limit(None), visible)
        } else {
            page_messages(
                all,
                q.before_id.as_deref(),
                q.after_id.as_deref(),
                skip,
                limit,
                visible,
            )
        };
        Ok(page
            .into_iter()
            .map(|m| self.message_json(m, viewer))
            .collect())
    }

    /// `GET /v1/rooms/:roomId/chatMessages/:messageId`: 404 when the message
    /// is in another room.
    pub fn get_message(
        &self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
    ) -> Result<Value, ApiError> {
        let room = self.load_room(caller, room_id)?;
        let msg = self.find_message(&room.id, msg_id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    pub(super) fn find_message(&self, room_id: &str, msg_id: &str) -> Result<&Message, ApiError> {
        self.messages
            .get(room_id)
            .and_then(|m| m.get(msg_id))
            .ok_or_else(ApiError::not_found)
    }

    /// `GET /v1/rooms/:roomId/chatMessages/:parentId/thread` (§3.10).
    pub fn thread(
        &self,
        caller: &Caller,
        room_id: &str,
        parent_id: &str,
        q: &MessageQuery,
    ) -> Result<Vec<Value>, ApiError> {
        let room = self.load_room(caller, room_id)?;
        self.find_message(&room.id, parent_id)?;
        let empty = BTreeMap::new();
        let all = self.messages.get(&room.id).unwrap_or(&empty);
        let limit = clamp_limit(q.limit);
        let page = page_messages(
            all,
            q.before_id.as_deref(),
            q.after_id.as_deref(),
            0,
            limit,
            |m| m.parent_id.as_deref() == Some(parent_id),
        );
        Ok(page
            .into_iter()
            .map(|m| self.message_json(m, Some(&caller.user_id)))
            .collect())
    }

    /// `POST /v1/rooms/:roomId/chatMessages` (§3.7). Saves, updates unread
    /// items and pushes the message to every open stream of the room
    /// (including the sender's own, §3.7 last bullet).
    pub fn post_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        text: Option<&str>,
        status: bool,
        parent_id: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let room_id = self.load_room_for_write(caller, room_id)?.id.clone();
        let text = text.unwrap_or_default();
        if text.is_empty() {
            return Err(ApiError::bad_request("Text is required"));
        }
        if text_len(text) > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("Message exceeds maximum size"));
        }
        if let Some(pid) = parent_id {
            if !is_object_id(pid) {
                return Err(ApiError::bad_request("parentId must be a valid message ID"));
            }
            if self.find_message(&room_id, pid).is_err() {
                return Err(ApiError::bad_request(format!(
                    "Parent message {pid} doesn't exist in troupe {room_id}"
                )));
            }
        }
        let id = self.new_object_id(now_ms);
        let rendered = self.render_by(text, &room_id, &caller.user_id);
        let msg = Message {
            id: id.clone(),
            room_id: room_id.clone(),
            from_user: caller.user_id.clone(),
            text: text.to_string(),
            rendered,
            status,
            sent_ms: now_ms,
            edited_ms: None,
            parent_id: parent_id.map(str::to_string),
            thread_count: 0,
            v: 1,
            read_by: BTreeSet::new(),
        };
        self.mark_unread_for_others(&msg);
        let room_msgs = self.messages.entry(room_id.clone()).or_default();
        if let Some(pid) = parent_id
            && let Some(parent) = room_msgs.get_mut(pid)
        {
            // Each reply saves the parent: count and version go up (§3.10).
            parent.thread_count += 1;
            parent.v += 1;
        }
        room_msgs.insert(id.clone(), msg);
        self.broadcast(&room_id, &id);
        if let Some(pid) = parent_id {
            // The parent's new thread count reaches realtime clients as an `update` whose
            // `editedAt` did not change (§3.10).
            self.faye_message(&room_id, pid, "update");
        }
        let msg = self.find_message(&room_id, &id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    /// Renders a text `author` writes in `room_id`. Only a room admin announces with
    /// `@/all`; from anyone else it mentions nobody.
    pub(super) fn render_by(&self, text: &str, room_id: &str, author: &str) -> Rendered {
        let mut rendered = render::render(text, |name| {
            self.user_by_username(name).map(|u| u.id.clone())
        });
        let admin = self
            .rooms
            .get(room_id)
            .is_some_and(|r| r.admins.contains(author));
        if !admin {
            rendered.mentions.retain(|m| !m.group);
        }
        rendered
    }

    pub(super) fn mark_unread_for_others(&mut self, msg: &Message) {
        let members = self
            .rooms
            .get(&msg.room_id)
            .map(|r| r.members.clone())
            .unwrap_or_default();
        for m in members.iter().filter(|m| **m != msg.from_user) {
            self.unread
                .entry((m.clone(), msg.room_id.clone()))
                .or_default()
                .chat
                .insert(msg.id.clone());
        }
        // Mentions count for non-members too: that is what puts a room with
        // `roomMember: false` into their room list (§3.2).
        if msg.rendered.mentions.iter().any(|m| m.group) {
            for m in members.iter().filter(|m| **m != msg.from_user) {
                self.unread
                    .entry((m.clone(), msg.room_id.clone()))
                    .or_default()
                    .mention
                    .insert(msg.id.clone());
            }
        }
        for men in &msg.rendered.mentions {
            if let Some(uid) = men.user_id.as_ref().filter(|u| **u != msg.from_user) {
                let entry = self
                    .unread
                    .entry((uid.clone(), msg.room_id.clone()))
                    .or_default();
                entry.mention.insert(msg.id.clone());
                if members.contains(uid) {
                    entry.chat.insert(msg.id.clone());
                }
            }
        }
    }

    pub(super) fn broadcast(&mut self, room_id: &str, msg_id: &str) {
        let Ok(msg) = self.find_message(room_id, msg_id) else {
            return;
        };
        let mut line = self.message_json(msg, None).to_string();
        line.push('\n');
        // A failed send means the client went away: forget that stream.
        self.streams
            .retain(|s| s.room_id != room_id || s.tx.send(line.clone()).is_ok());
        self.faye_message(room_id, msg_id, "create");
    }

    /// `PUT /v1/rooms/:roomId/chatMessages/:messageId` (§3.8): author only,
    /// within the edit window, 4096 chars; empty text allowed. Sets
    /// `editedAt`, bumps `v`. Edits are not sent on the stream (§5.1).
    pub fn edit_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
        text: Option<&str>,
        now_ms: u64,
    ) -> Result<Value, ApiError> {
        let room_id = self.load_room_for_write(caller, room_id)?.id.clone();
        let msg = self.find_message(&room_id, msg_id)?;
        if msg.from_user != caller.user_id {
            return Err(ApiError::new(403, "You can only edit your own messages"));
        }
        if now_ms > msg.sent_ms + self.config.edit_window.as_millis() as u64 {
            return Err(ApiError::bad_request("You can no longer edit this message"));
        }
        let text = text.unwrap_or_default();
        if text_len(text) > MAX_TEXT_CHARS {
            return Err(ApiError::bad_request("Message exceeds maximum size"));
        }
        let rendered = self.render_by(text, &room_id, &caller.user_id);
        let Some(msg) = self
            .messages
            .get_mut(&room_id)
            .and_then(|m| m.get_mut(msg_id))
        else {
            return Err(ApiError::not_found());
        };
        msg.text = text.to_string();
        msg.rendered = rendered;
        msg.edited_ms = Some(now_ms);
        msg.v += 1;
        self.faye_message(&room_id, msg_id, "update");
        let msg = self.find_message(&room_id, msg_id)?;
        Ok(self.message_json(msg, Some(&caller.user_id)))
    }

    /// `DELETE /v1/rooms/:roomId/chatMessages/:messageId` (§3.9): author or
    /// room admin; a parent with replies is blanked instead of removed;
    /// deleting a reply decrements the parent's count. Answer: 204.
    pub fn delete_message(
        &mut self,
        caller: &Caller,
        room_id: &str,
        msg_id: &str,
    ) -> Result<(), ApiError> {
        let room = self.load_room(caller, room_id)?;
        let is_admin = room.admins.contains(&caller.user_id);
        let room_id = room.id.clone();
        let msg = self.find_message(&room_id, msg_id)?;
        if msg.from_user != caller.user_id && !is_admin {
            return Err(ApiError::forbidden());
        }
        let Some(msgs) = self.messages.get_mut(&room_id) else {
            return Err(ApiError::not_found());
        };
        let Some(msg) = msgs.get_mut(msg_id) else {
            return Err(ApiError::not_found());
        };
        if msg.thread_count > 0 {
            msg.text.clear();
            msg.rendered = Rendered::default();
            msg.v += 1;
            self.faye_message(&room_id, msg_id, "update");
            return Ok(());
        }
        let parent = msg.parent_id.clone();
        msgs.remove(msg_id);
        if let Some(parent) = parent.and_then(|p| msgs.get_mut(&p)) {
            parent.thread_count = parent.thread_count.saturating_sub(1);
            parent.v += 1;
        }
        for u in self.unread.values_mut() {
            u.chat.remove(msg_id);
            u.mention.remove(msg_id);
        }
        self.faye_message(&room_id, msg_id, "remove");
        Ok(())
    }
}
