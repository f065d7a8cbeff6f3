//! The realtime API: a Bayeux server over long-polling, as Gitter's Faye endpoint behaves
//! (docs/gitter-api.md §6): `ext.token` at the handshake, the channel rules of §6.3 at
//! subscribe (with the default snapshots), `{operation, model}` envelopes numbered with
//! `ext.c` per client, the `"401::..."` errors with their advice, and client publishes
//! refused. What happens in the fake's world is published here as it happens; with an
//! external Faye server configured (the e2e test's, the protocol's own implementation) it is
//! published there too.
//!
//! The HTTP layer holds a connect open: [`GitterState::bayeux`] answers at once what it can,
//! and names the client whose connect waits for deliveries ([`Held`]).

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::Notify;

use super::*;

/// How long the server holds a connect (advertised as `advice.timeout`); the real value is
/// 120 s (§6.1), shorter here so tests and closed clients do not wait as long.
pub const FAYE_HOLD_MS: u64 = 25_000;

/// Deliveries queued for one client at most; past this the client is forgotten (it must
/// handshake again, and its rooms catch up by REST), so a client that stopped connecting
/// cannot grow the fake's memory.
const MAX_QUEUED: usize = 10_000;

/// One Bayeux client.
#[derive(Debug)]
pub(super) struct FayeClient {
    user_id: String,
    token: String,
    subscriptions: BTreeSet<String>,
    queue: VecDeque<Value>,
    seq: u64,
    wake: Arc<Notify>,
    /// Its token was revoked: what is queued is delivered, then the client is gone.
    revoked: bool,
    /// Connects made: a new connect answers the one held before it (with nothing), as Faye
    /// does, so a client that gave up on a connect never has its deliveries sent there.
    connects: u64,
}

/// The realtime server's state.
#[derive(Debug, Default)]
pub(super) struct Faye {
    clients: HashMap<String, FayeClient>,
    /// The next publish is lost on its way to the clients: its sequence number is used and
    /// nothing delivered (§6.4), so the next delivery shows the gap.
    skip_next: bool,
    /// Publishes forwarded to an external Faye server.
    external: Option<mpsc::UnboundedSender<Value>>,
}

/// A connect that waits for deliveries.
#[derive(Debug)]
pub struct Held {
    /// The client.
    pub client_id: String,
    /// Notified (all waiters) when something is queued for it or a newer connect comes.
    pub wake: Arc<Notify>,
    /// Which of the client's connects this is.
    pub generation: u64,
    /// The connect's answer, sent with whatever is delivered.
    pub reply: Value,
}

fn advice_handshake() -> Value {
    json!({ "reconnect": "handshake", "interval": 2000 })
}

fn reply(request: &Value, fields: Value) -> Value {
    let mut out = json!({ "channel": request.get("channel").cloned().unwrap_or(Value::Null) });
    if let Some(id) = request.get("id") {
        out["id"] = id.clone();
    }
    if let Some(sub) = request.get("subscription") {
        out["subscription"] = sub.clone();
    }
    if let (Value::Object(out), Value::Object(fields)) = (&mut out, fields) {
        out.extend(fields);
    }
    out
}

impl GitterState {
    /// Forward every publish to an external Faye server too (its sender).
    pub fn faye_forward(&mut self, to: mpsc::UnboundedSender<Value>) {
        self.faye.external = Some(to);
    }

    /// Stops forwarding to the external server (its task ends with the channel).
    pub fn faye_forward_stop(&mut self) {
        self.faye.external = None;
    }

    /// Handles one long-polling POST (a batch of Bayeux messages). Returns the answers due
    /// now and, for a connect with nothing to deliver, the held connect.
    pub fn bayeux(&mut self, batch: &[Value]) -> (Vec<Value>, Option<Held>) {
        let mut answers = Vec::new();
        let mut held = None;
        for message in batch {
            let channel = message.get("channel").and_then(Value::as_str).unwrap_or("");
            let client_id = message.get("clientId").and_then(Value::as_str);
            match channel {
                "/meta/handshake" => answers.push(self.faye_handshake(message)),
                "/meta/subscribe" => answers.push(self.faye_subscribe(message, client_id)),
                "/meta/unsubscribe" => {
                    let sub = message.get("subscription").and_then(Value::as_str);
                    match client_id.and_then(|c| self.faye.clients.get_mut(c)) {
                        Some(client) => {
                            if let Some(sub) = sub {
                                client.subscriptions.remove(sub);
                            }
                            answers.push(reply(message, json!({ "successful": true })));
                        }
                        None => answers.push(unknown_client(message, client_id)),
                    }
                }
                "/meta/connect" => match client_id.and_then(|c| self.faye.clients.get_mut(c)) {
                    Some(client) => {
                        let answer = reply(
                            message,
                            json!({
                                "successful": true,
                                "clientId": client_id,
                                "advice": { "reconnect": "retry", "interval": 0, "timeout": FAYE_HOLD_MS },
                            }),
                        );
                        let revoked = client.revoked;
                        client.connects += 1;
                        client.wake.notify_waiters();
                        if client.queue.is_empty() && !revoked {
                            held = Some(Held {
                                client_id: client_id.unwrap_or_default().to_owned(),
                                wake: client.wake.clone(),
                                generation: client.connects,
                                reply: answer,
                            });
                        } else {
                            answers.push(answer);
                            answers.extend(client.queue.drain(..));
                            if revoked {
                                self.faye.clients.remove(client_id.unwrap_or_default());
                            }
                        }
                    }
                    None => answers.push(unknown_client(message, client_id)),
                },
                "/meta/disconnect" => {
                    if let Some(c) = client_id {
                        self.faye.clients.remove(c);
                    }
                    answers.push(reply(message, json!({ "successful": true })));
                }
                // §6.1: "Push access denied" for anything a client publishes.
                _ => answers.push(reply(
                    message,
                    json!({ "successful": false, "error": "403::Push access denied" }),
                )),
            }
        }
        (answers, held)
    }

    /// What a held connect delivers when it wakes or its hold ends: nothing if the client
    /// was forgotten meanwhile (its next connect hears so) or made a newer connect.
    pub fn faye_drain(&mut self, client_id: &str, generation: u64) -> Vec<Value> {
        let Some(client) = self.faye.clients.get_mut(client_id) else {
            return Vec::new();
        };
        if client.connects != generation {
            return Vec::new();
        }
        let queued = client.queue.drain(..).collect();
        if client.revoked {
            self.faye.clients.remove(client_id);
        }
        queued
    }

    /// Whether a held connect has deliveries waiting (or was superseded).
    pub fn faye_pending(&self, client_id: &str, generation: u64) -> bool {
        self.faye
            .clients
            .get(client_id)
            .is_none_or(|c| c.connects != generation || !c.queue.is_empty() || c.revoked)
    }

    fn faye_handshake(&mut self, message: &Value) -> Value {
        let token = message
            .get("ext")
            .and_then(|e| e.get("token"))
            .and_then(Value::as_str);
        // §6.2: a 401 at handshake comes with advice to stop for 10 days.
        let refuse = |error: &str| {
            reply(
                message,
                json!({
                    "successful": false,
                    "error": error,
                    "advice": { "reconnect": "none", "interval": 864_000_000u64 },
                }),
            )
        };
        let Some(token) = token else {
            return refuse("401::Access token required");
        };
        let Ok(caller) = self.authenticate(Some(token)) else {
            return refuse("401::Invalid access token");
        };
        let client_id = random_hex(&mut self.rng, 32);
        self.faye.clients.insert(
            client_id.clone(),
            FayeClient {
                user_id: caller.user_id.clone(),
                token: caller.token,
                subscriptions: BTreeSet::new(),
                queue: VecDeque::new(),
                seq: 0,
                wake: Arc::new(Notify::new()),
                revoked: false,
                connects: 0,
            },
        );
        reply(
            message,
            json!({
                "successful": true,
                "clientId": client_id,
                "version": "1.0",
                "supportedConnectionTypes": ["long-polling"],
                "advice": { "reconnect": "retry", "interval": 0, "timeout": FAYE_HOLD_MS },
                "ext": { "userId": caller.user_id },
            }),
        )
    }

    /// `/meta/subscribe` under the routes of §6.3.
    fn faye_subscribe(&mut self, message: &Value, client_id: Option<&str>) -> Value {
        let Some(client) = client_id.and_then(|c| self.faye.clients.get(c)) else {
            return unknown_client(message, client_id);
        };
        let (user_id, token) = (client.user_id.clone(), client.token.clone());
        let sub = message
            .get("subscription")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let snapshot_wanted = message
            .get("ext")
            .and_then(|e| e.get("snapshot"))
            .is_none_or(|s| s.as_bool() != Some(false));
        let denied = || {
            reply(
                message,
                json!({ "successful": false, "error": "403::Authorisation denied." }),
            )
        };
        let parts: Vec<&str> = sub.trim_start_matches('/').split('/').collect();
        let snapshot = match parts.as_slice() {
            ["api", "v1", "rooms", rid, rest @ ..] if rest.len() <= 1 => {
                let readable = self
                    .rooms
                    .get(*rid)
                    .is_some_and(|r| r.members.contains(&user_id) || (r.public && !r.one_to_one));
                if !readable {
                    return denied();
                }
                match rest {
                    ["chatMessages"] if snapshot_wanted => Some(self.latest_json(rid, 30)),
                    [] | ["chatMessages"] | ["users"] | ["events"] => None,
                    _ => return unknown_subscription(message, &sub),
                }
            }
            ["api", "v1", "user", uid] | ["api", "v1", "user", uid, "rooms"] => {
                if *uid != user_id {
                    return denied();
                }
                None
            }
            ["api", "v1", "token", t] => {
                if *t != token {
                    return denied();
                }
                None
            }
            ["api", "v1", "ping", ..] => None,
            _ => return unknown_subscription(message, &sub),
        };
        if let Some(client) = client_id.and_then(|c| self.faye.clients.get_mut(c)) {
            client.subscriptions.insert(sub);
        }
        let mut answer = reply(message, json!({ "successful": true }));
        if let Some(snapshot) = snapshot {
            answer["ext"] = json!({ "snapshot": snapshot });
        }
        answer
    }

    fn latest_json(&self, room_id: &str, n: usize) -> Value {
        let all = self.room_messages(room_id);
        let start = all.len().saturating_sub(n);
        Value::Array(
            all[start..]
                .iter()
                .map(|m| self.message_json(m, None))
                .collect(),
        )
    }

    /// Publishes `data` on `channel` to every client subscribed to it (and to the external
    /// server).
    pub(super) fn faye_publish(&mut self, channel: &str, data: Value) {
        if let Some(external) = &self.faye.external {
            let _ = external.send(json!({ "channel": channel, "data": data }));
        }
        let skip = std::mem::take(&mut self.faye.skip_next);
        self.faye.clients.retain(|_, client| {
            if !client.subscriptions.contains(channel) {
                return true;
            }
            client.seq += 1;
            if skip {
                return true;
            }
            client.queue.push_back(json!({
                "channel": channel,
                "data": data,
                "ext": { "c": client.seq },
            }));
            client.wake.notify_waiters();
            client.queue.len() <= MAX_QUEUED
        });
    }

    /// The `{operation, model}` envelope of a data change (§6.4).
    pub(super) fn faye_change(&mut self, channel: &str, operation: &str, model: Value) {
        if self.faye.clients.is_empty() && self.faye.external.is_none() {
            return;
        }
        self.faye_publish(channel, json!({ "operation": operation, "model": model }));
    }

    /// A message was created, saved again, or removed (§6.4 `chatMessages`).
    pub(super) fn faye_message(&mut self, room_id: &str, msg_id: &str, operation: &str) {
        let channel = format!("/api/v1/rooms/{room_id}/chatMessages");
        let model = match operation {
            "remove" => json!({ "id": msg_id }),
            _ => match self.find_message(room_id, msg_id) {
                Ok(msg) => self.message_json(msg, None),
                Err(_) => return,
            },
        };
        self.faye_change(&channel, operation, model);
    }

    /// `user_id` joined or left `room_id`: the room's member channel (only for rooms of 100
    /// members or fewer, §6.4) and the user's room list hear it.
    pub(super) fn faye_membership(&mut self, room_id: &str, user_id: &str, joined: bool) {
        let (Some(room), Some(user)) = (self.rooms.get(room_id), self.users.get(user_id)) else {
            return;
        };
        let small = room.members.len() <= 100;
        let user_json = self.user_json(user, false);
        let room_json = self.room_json_with(room, user_id, joined);
        let users = format!("/api/v1/rooms/{room_id}/users");
        let list = format!("/api/v1/user/{user_id}/rooms");
        if joined {
            if small {
                self.faye_change(&users, "create", user_json);
            }
            self.faye_change(&list, "create", room_json);
        } else {
            self.faye_change(&users, "remove", json!({ "id": user_id }));
            self.faye_change(&list, "remove", json!({ "id": room_id }));
        }
    }

    /// Sets a room's topic (and name), as its admin does in Gitter's settings: the room's
    /// channel gets a `patch` and every member's list an `update`.
    pub fn set_room_details(
        &mut self,
        room: &str,
        name: Option<&str>,
        topic: Option<&str>,
    ) -> Result<(), ApiError> {
        let room_id = self
            .room_ref(room)
            .ok_or_else(ApiError::not_found)?
            .id
            .clone();
        let members = {
            let r = self
                .rooms
                .get_mut(&room_id)
                .ok_or_else(ApiError::not_found)?;
            if let Some(name) = name {
                r.name = name.to_owned();
            }
            if let Some(topic) = topic {
                r.topic = topic.to_owned();
            }
            r.v += 1;
            r.members.clone()
        };
        let mut patch = json!({ "id": room_id });
        if let Some(name) = name {
            patch["name"] = json!(name);
        }
        if let Some(topic) = topic {
            patch["topic"] = json!(topic);
        }
        self.faye_change(&format!("/api/v1/rooms/{room_id}"), "patch", patch);
        for member in members {
            let Some(room) = self.rooms.get(&room_id) else {
                break;
            };
            let model = self.room_json_with(room, &member, true);
            self.faye_change(&format!("/api/v1/user/{member}/rooms"), "update", model);
        }
        Ok(())
    }

    /// Renames a user (their display name): every room they are in hears a `users` `update`.
    pub fn rename_user(&mut self, username: &str, display_name: &str) -> Result<(), ApiError> {
        let user_id = self
            .user_by_username(username)
            .ok_or_else(ApiError::not_found)?
            .id
            .clone();
        if let Some(user) = self.users.get_mut(&user_id) {
            user.display_name = display_name.to_owned();
            user.v += 1;
        }
        let rooms: Vec<String> = self
            .rooms
            .values()
            .filter(|r| r.members.contains(&user_id))
            .map(|r| r.id.clone())
            .collect();
        let Some(user) = self.users.get(&user_id) else {
            return Ok(());
        };
        let model = self.user_json(user, false);
        for room in rooms {
            self.faye_change(
                &format!("/api/v1/rooms/{room}/users"),
                "update",
                model.clone(),
            );
        }
        Ok(())
    }

    /// A token was revoked: its channel hears it, and its clients are gone (§6.4).
    pub(super) fn faye_revoked(&mut self, token: &str) {
        self.faye_publish(
            &format!("/api/v1/token/{token}"),
            json!({ "notification": "token_revoked" }),
        );
        // Delivered by the connect each client holds (woken here), then forgotten there.
        for client in self.faye.clients.values_mut().filter(|c| c.token == token) {
            client.revoked = true;
            client.wake.notify_waiters();
        }
    }

    /// Forgets every client (a server restart): their next request hears they are unknown.
    pub fn faye_forget_clients(&mut self) -> usize {
        let n = self.faye.clients.len();
        for client in self.faye.clients.values() {
            client.wake.notify_waiters();
        }
        self.faye.clients.clear();
        n
    }

    /// The next delivery is lost, and its sequence number with it (§6.4).
    pub fn faye_skip_sequence(&mut self) {
        self.faye.skip_next = true;
    }

    /// The channels subscribed by the clients of `username`, for tests.
    pub fn faye_subscriptions(&self, username: &str) -> Vec<String> {
        let Some(user) = self.user_by_username(username) else {
            return Vec::new();
        };
        let mut subs: Vec<String> = self
            .faye
            .clients
            .values()
            .filter(|c| c.user_id == user.id)
            .flat_map(|c| c.subscriptions.iter().cloned())
            .collect();
        subs.sort();
        subs
    }

    /// Usernames of the clients subscribed to a room's messages.
    pub(super) fn faye_readers(&self, room_id: &str) -> Vec<String> {
        let channel = format!("/api/v1/rooms/{room_id}/chatMessages");
        self.faye
            .clients
            .values()
            .filter(|c| c.subscriptions.contains(&channel))
            .filter_map(|c| self.users.get(&c.user_id).map(|u| u.username.clone()))
            .collect()
    }

    /// How many Bayeux clients exist.
    pub fn faye_clients(&self) -> usize {
        self.faye.clients.len()
    }
}

fn unknown_client(message: &Value, client_id: Option<&str>) -> Value {
    reply(
        message,
        json!({
            "successful": false,
            "error": format!("401::Client {} not authenticated", client_id.unwrap_or("")),
            "advice": advice_handshake(),
        }),
    )
}

fn unknown_subscription(message: &Value, sub: &str) -> Value {
    reply(
        message,
        json!({ "successful": false, "error": format!("404::Unknown subscription {sub}") }),
    )
}
