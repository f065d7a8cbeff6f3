//! The one test harness for the core: the bridge, a model store that applies every change
//! set (and must always equal the bridge's own state), and a tiny deterministic world that
//! answers effects the way a homeserver and Gitter would.

#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use gitter_bridge_core::*;

pub const DOMAIN: &str = "example.org";

pub fn uid(local: &str) -> OwnedUserId {
    format!("@{local}:{DOMAIN}").try_into().unwrap()
}

pub fn config() -> Config {
    let mut c = Config::with_defaults(DOMAIN);
    c.permissions.domains = vec![DOMAIN.to_owned()];
    c.public_url = "https://bridge.example.org".into();
    c.oauth_authorize_url = "https://gitter.example/login/oauth/authorize".into();
    c.oauth_client_id = "cid".into();
    c
}

pub fn gitter_user(name: &str) -> GitterUser {
    GitterUser {
        id: GitterUserId::new(format!("u-{name}")),
        username: name.to_owned(),
        display_name: format!("{name} Display"),
        avatar_url: None,
    }
}

/// A Gitter room in the fake world.
#[derive(Clone, Debug)]
pub struct WorldRoom {
    pub room: GitterRoom,
    pub members: BTreeSet<String>,
    pub messages: Vec<GitterMessage>,
}

/// What a Matrix room looks like to the harness.
#[derive(Clone, Debug, Default)]
pub struct MatrixRoom {
    pub members: BTreeSet<OwnedUserId>,
    /// (sender, content) in order, as shown now (edits applied, redactions gone).
    pub timeline: Vec<(OwnedUserId, MatrixContent)>,
    /// The event id of each timeline entry.
    pub events: Vec<OwnedEventId>,
    /// Edits (`m.replace`) accepted: (sender, target).
    pub edits: Vec<(OwnedUserId, OwnedEventId)>,
    /// Events redacted, by whom.
    pub redactions: Vec<(OwnedUserId, OwnedEventId)>,
    /// Name and topic changes, in order.
    pub state: Vec<RoomState>,
    /// The `ts` each sent event asked for (timestamp massaging).
    pub stamps: BTreeMap<OwnedEventId, Option<Timestamp>>,
}

pub struct Harness {
    pub bridge: Bridge,
    pub seed: u64,
    pub store: Snapshot,
    pub now: Timestamp,
    pub pending: VecDeque<Effect>,
    pub log: Vec<Effect>,
    pub replies: Vec<(RequestId, WebReply)>,
    pub warnings: Vec<CoreError>,
    /// Every turn the bridge reported for the operator's log.
    pub happenings: Vec<Happening>,
    pub matrix: BTreeMap<OwnedRoomId, MatrixRoom>,
    pub gitter: BTreeMap<GitterRoomId, WorldRoom>,
    /// token -> Gitter username.
    pub tokens: BTreeMap<String, String>,
    /// Rooms whose stream is open.
    pub streams: BTreeSet<GitterRoomId>,
    /// Rooms whose stream is open but currently dropped (messages are not delivered).
    pub down: BTreeSet<GitterRoomId>,
    pub next: u64,
    pub next_request: u64,
    pub txn: u64,
    /// Failures to answer instead of success, by action name, in order.
    pub failures: BTreeMap<&'static str, VecDeque<FailureKind>>,
    /// Lanes held by an effect that failed and will be tried again (as the driver keeps
    /// them): nothing else of the lane runs until the core re-emits it.
    pub held: BTreeMap<Lane, EffectId>,
    /// Gitter sends whose answer is lost: Gitter stores the message, the core hears a
    /// transient failure (a lost response, a time-out).
    pub lose_send_answers: usize,
    /// When each Gitter message was posted (Gitter refuses edits 600 s later, §3.8).
    pub sent_at: BTreeMap<GitterMessageId, Timestamp>,
    /// Users whose realtime channels are watched.
    pub watched: BTreeSet<OwnedUserId>,
    /// Files on the web, by URL (what `MirrorMedia` downloads); any other URL fails for good.
    pub web_files: BTreeMap<String, Vec<u8>>,
    /// Uploads made, in order: (URL, mxc).
    pub uploads: Vec<(String, String)>,
}

/// The contract of `Snapshot::apply`: a store that applies every change set holds the
/// bridge's state exactly, except that the bridge keeps only a hot set of the message
/// mappings (each of which the store holds, the same).
pub fn assert_state_matches(store: &Snapshot, bridge: &Snapshot) {
    assert_eq!(
        store.without_messages(),
        bridge.without_messages(),
        "the change sets must rebuild the bridge's state exactly"
    );
    for m in bridge.messages.values() {
        assert_eq!(
            store.messages.get(&m.owner, &m.gitter_id),
            Some(m),
            "every mapping the bridge holds is in the store, the same"
        );
    }
}

impl Harness {
    pub fn new() -> Harness {
        Harness::with_config(config())
    }

    pub fn with_config(config: Config) -> Harness {
        let mut h = Harness {
            bridge: Bridge::new(config, 7),
            seed: 7,
            store: Snapshot::default(),
            now: Timestamp(1_700_000_000_000),
            pending: VecDeque::new(),
            log: Vec::new(),
            replies: Vec::new(),
            warnings: Vec::new(),
            happenings: Vec::new(),
            matrix: BTreeMap::new(),
            gitter: BTreeMap::new(),
            tokens: BTreeMap::new(),
            streams: BTreeSet::new(),
            down: BTreeSet::new(),
            next: 1,
            next_request: 1,
            txn: 0,
            failures: BTreeMap::new(),
            held: BTreeMap::new(),
            lose_send_answers: 0,
            sent_at: BTreeMap::new(),
            watched: BTreeSet::new(),
            web_files: BTreeMap::new(),
            uploads: Vec::new(),
        };
        h.step(Input::Startup);
        h
    }

    pub fn bot(&self) -> OwnedUserId {
        self.bridge.config().bot.clone()
    }

    /// Feeds one input, commits its change set to the model store and queues its effects.
    pub fn step(&mut self, input: Input) -> Outputs {
        let out = self.bridge.handle(self.now, input);
        self.store.apply_set(&out.changes);
        assert_state_matches(&self.store, self.bridge.snapshot());
        for id in &out.holds {
            let lane = self.store.outbox[id].lane.clone();
            self.held.insert(lane, *id);
        }
        for effect in &out.effects {
            if self.held.get(&effect.lane) == Some(&effect.id) {
                // A retry runs at the head of the lane it held.
                self.held.remove(&effect.lane);
                self.pending.push_front(effect.clone());
            } else {
                self.pending.push_back(effect.clone());
            }
        }
        self.replies.extend(out.replies.iter().cloned());
        self.warnings.extend(out.warnings.iter().cloned());
        self.happenings.extend(out.happenings.iter().cloned());
        out
    }

    pub fn fresh(&mut self, prefix: &str) -> String {
        self.next += 1;
        format!("{prefix}{:04}", self.next)
    }

    /// Drops the bridge and restores it from the model store, as after a crash.
    pub fn restart(&mut self) {
        self.streams.clear();
        self.down.clear();
        self.pending.clear();
        self.held.clear();
        // What a store loads: the hot set of the mappings, not all of them.
        let config = self.bridge.config().clone();
        let loaded = self.store.hot_set(config.hot_mappings_per_portal_at_start);
        self.bridge = Bridge::restore(config, self.seed + 1, loaded);
        self.step(Input::Startup);
    }

    // ------------------------------------------------------------ the world

    pub fn add_gitter_room(&mut self, uri: &str, members: &[&str]) -> GitterRoomId {
        let id = GitterRoomId::new(format!("r-{uri}"));
        self.gitter.insert(
            id.clone(),
            WorldRoom {
                room: GitterRoom {
                    id: id.clone(),
                    name: uri.to_owned(),
                    uri: Some(uri.to_owned()),
                    topic: format!("topic of {uri}"),
                    one_to_one: false,
                    user_count: Some(members.len() as u64),
                    room_member: None,
                    avatar_url: None,
                },
                members: members.iter().map(|m| m.to_string()).collect(),
                messages: Vec::new(),
            },
        );
        id
    }

    pub fn room_for(&self, uri: &str) -> GitterRoomId {
        GitterRoomId::new(format!("r-{uri}"))
    }

    /// A Gitter user posts in a room (from any client); returns the message.
    pub fn gitter_post(&mut self, room: &GitterRoomId, author: &str, text: &str) -> GitterMessage {
        let id = GitterMessageId::new(self.fresh("m"));
        let message = GitterMessage {
            id,
            text: text.to_owned(),
            html: text.to_owned(),
            status: false,
            sent: "2024-01-01T00:00:00.000Z".into(),
            from: gitter_user(author),
            parent_id: None,
            mentions: Vec::new(),
        };
        self.sent_at.insert(message.id.clone(), self.now);
        self.gitter
            .get_mut(room)
            .expect("room exists")
            .messages
            .push(message.clone());
        message
    }

    /// A Gitter user posts and the open stream delivers it.
    pub fn gitter_says(&mut self, room: &GitterRoomId, author: &str, text: &str) -> GitterMessage {
        let m = self.gitter_post(room, author, text);
        if self.live(room) {
            self.step(Input::GitterMessage {
                room: room.clone(),
                message: m.clone(),
            });
        }
        m
    }

    /// Whether the room's stream delivers messages now.
    pub fn live(&self, room: &GitterRoomId) -> bool {
        self.streams.contains(room) && !self.down.contains(room)
    }

    pub fn respond(&mut self, effect: &Effect) -> EffectResult {
        // Injected send failures hit the POSTs, not the reconcile reads between them.
        let reconcile_read = matches!(
            effect.action.gitter_send(),
            Some(GitterCall::SendMessage {
                reconcile: true,
                ..
            })
        );
        if let Some(kind) = self
            .failures
            .get_mut(effect.action.name())
            .filter(|_| !reconcile_read)
            .and_then(|q| q.pop_front())
        {
            return Err(Failure::new(kind, "injected"));
        }
        match &effect.action {
            Action::Matrix(call) => self.respond_matrix(call),
            Action::OAuth { code } => {
                let name = code.expose().trim_start_matches("code-").to_owned();
                let token = format!("tok-{name}");
                self.tokens.insert(token.clone(), name);
                Ok(EffectOutput::Token(Secret::new(token)))
            }
            Action::Gitter { token, call } => self.respond_gitter(token, call),
            Action::Stream(StreamCall::Open { room, .. }) => {
                self.streams.insert(room.clone());
                Ok(EffectOutput::Done)
            }
            Action::Stream(StreamCall::Close { room }) => {
                self.streams.remove(room);
                Ok(EffectOutput::Done)
            }
            Action::Stream(StreamCall::Watch { user, .. }) => {
                self.watched.insert(user.clone());
                Ok(EffectOutput::Done)
            }
            Action::Stream(StreamCall::Unwatch { user }) => {
                self.watched.remove(user);
                Ok(EffectOutput::Done)
            }
            Action::Store(call) => Ok(self.respond_store(call)),
        }
    }

    fn respond_matrix(&mut self, call: &MatrixCall) -> EffectResult {
        match call {
            MatrixCall::CreatePortal(new) => {
                let NewPortal {
                    creator,
                    invite,
                    power_users,
                    ..
                } = &**new;
                assert!(
                    !power_users.contains_key(creator),
                    "room v12: creator not in users"
                );
                let id: OwnedRoomId = format!("!{}", self.fresh("room")).try_into().unwrap();
                let mut room = MatrixRoom::default();
                room.members.insert(creator.clone());
                room.members.extend(invite.iter().cloned());
                self.matrix.insert(id.clone(), room);
                Ok(EffectOutput::RoomCreated(id))
            }
            MatrixCall::SendMessage {
                room,
                sender,
                content,
                ts,
            } => {
                let ev: OwnedEventId = format!("${}", self.fresh("ev")).try_into().unwrap();
                let r = self.matrix.entry(room.clone()).or_default();
                r.stamps.insert(ev.clone(), *ts);
                r.timeline.push((sender.clone(), content.clone()));
                r.events.push(ev.clone());
                Ok(EffectOutput::EventSent(ev))
            }
            MatrixCall::SetAvatar { .. } => Ok(EffectOutput::Done),
            MatrixCall::MirrorMedia { url, .. } => {
                let Some(bytes) = self.web_files.get(url) else {
                    return Err(Failure::new(FailureKind::Rejected, "404 on the web"));
                };
                let size = bytes.len() as u64;
                let mxc = format!("mxc://{DOMAIN}/{}", self.fresh("up"));
                self.uploads.push((url.clone(), mxc.clone()));
                Ok(EffectOutput::Uploaded(Uploaded {
                    mxc,
                    content_type: "image/png".into(),
                    size,
                }))
            }
            MatrixCall::SendImage {
                room,
                sender,
                image,
                ts,
            } => {
                let ev: OwnedEventId = format!("${}", self.fresh("ev")).try_into().unwrap();
                let r = self.matrix.entry(room.clone()).or_default();
                r.stamps.insert(ev.clone(), *ts);
                // Shown in the timeline as `m.image <name> <mxc>`.
                r.timeline.push((
                    sender.clone(),
                    MatrixContent {
                        msgtype: OutMsgType::Text,
                        body: format!("m.image {} {}", image.name, image.mxc),
                        formatted_body: None,
                        thread: image.thread.clone(),
                        mentions: None,
                    },
                ));
                r.events.push(ev.clone());
                Ok(EffectOutput::EventSent(ev))
            }
            MatrixCall::Replace {
                room,
                sender,
                target,
                content,
            } => {
                let ev: OwnedEventId = format!("${}", self.fresh("ev")).try_into().unwrap();
                let r = self.matrix.entry(room.clone()).or_default();
                let Some(at) = r.events.iter().position(|e| e == target) else {
                    return Err(Failure::new(FailureKind::Rejected, "no such event"));
                };
                // Spec, "Event replacements": only the original's sender may replace it.
                if &r.timeline[at].0 != sender {
                    return Err(Failure::new(FailureKind::Forbidden, "not the sender"));
                }
                r.timeline[at].1 = content.clone();
                r.edits.push((sender.clone(), target.clone()));
                Ok(EffectOutput::EventSent(ev))
            }
            MatrixCall::Redact {
                room,
                sender,
                target,
                ..
            } => {
                let ev: OwnedEventId = format!("${}", self.fresh("ev")).try_into().unwrap();
                let r = self.matrix.entry(room.clone()).or_default();
                if let Some(at) = r.events.iter().position(|e| e == target) {
                    r.timeline.remove(at);
                    r.events.remove(at);
                }
                r.redactions.push((sender.clone(), target.clone()));
                Ok(EffectOutput::EventSent(ev))
            }
            MatrixCall::SetRoomState { room, state, .. } => {
                self.matrix
                    .entry(room.clone())
                    .or_default()
                    .state
                    .push(state.clone());
                Ok(EffectOutput::Done)
            }
            MatrixCall::Join { room, user, .. }
            | MatrixCall::Invite {
                room, target: user, ..
            } => {
                self.matrix
                    .entry(room.clone())
                    .or_default()
                    .members
                    .insert(user.clone());
                Ok(EffectOutput::Done)
            }
            MatrixCall::Leave { room, user }
            | MatrixCall::LeaveWithReason { room, user, .. }
            | MatrixCall::Kick {
                room, target: user, ..
            } => {
                self.matrix
                    .entry(room.clone())
                    .or_default()
                    .members
                    .remove(user);
                Ok(EffectOutput::Done)
            }
            MatrixCall::RoomMembers { room, .. } => Ok(EffectOutput::MatrixMembers(
                self.matrix
                    .get(room)
                    .map(|r| r.members.iter().cloned().collect())
                    .unwrap_or_default(),
            )),
            MatrixCall::RegisterGhost { .. }
            | MatrixCall::SetDisplayName { .. }
            | MatrixCall::DeleteAlias { .. } => Ok(EffectOutput::Done),
            MatrixCall::CreateRoom { .. } => unreachable!("the core emits CreatePortal"),
        }
    }

    fn respond_gitter(&mut self, token: &Secret, call: &GitterCall) -> EffectResult {
        match call {
            GitterCall::CurrentUser => match self.tokens.get(token.expose()) {
                Some(name) => Ok(EffectOutput::GitterUser(gitter_user(name))),
                None => Err(Failure::new(FailureKind::TokenRevoked, "401")),
            },
            GitterCall::ListRooms => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                Ok(EffectOutput::GitterRooms(
                    self.gitter
                        .values()
                        .filter(|r| r.members.contains(&name))
                        .map(|r| GitterRoom {
                            room_member: Some(true),
                            ..r.room.clone()
                        })
                        .collect(),
                ))
            }
            GitterCall::ResolveRoom { uri } => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                match self.gitter.values().find(|r| {
                    r.room
                        .uri
                        .as_deref()
                        .is_some_and(|u| u.eq_ignore_ascii_case(uri))
                }) {
                    Some(r) => Ok(EffectOutput::GitterRoom(GitterRoom {
                        room_member: Some(r.members.contains(&name)),
                        ..r.room.clone()
                    })),
                    None => Err(Failure::new(FailureKind::NotFound, "404")),
                }
            }
            GitterCall::JoinRoom { room, .. } => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                let r = self.gitter.get_mut(room).expect("room");
                r.members.insert(name);
                Ok(EffectOutput::GitterRoom(r.room.clone()))
            }
            GitterCall::LeaveRoom { room, .. } => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                let r = self.gitter.get_mut(room).expect("room");
                if r.members.remove(&name) {
                    Ok(EffectOutput::Done)
                } else {
                    Err(Failure::new(FailureKind::NotFound, "404"))
                }
            }
            GitterCall::RoomMembers { room } => Ok(EffectOutput::GitterUsers(
                self.gitter[room]
                    .members
                    .iter()
                    .map(|m| gitter_user(m))
                    .collect(),
            )),
            GitterCall::FetchMessages { room, after, limit } => {
                let all = &self.gitter[room].messages;
                let page: Vec<_> = match after {
                    Some(after) => {
                        let start = all.iter().position(|m| &m.id == after).map_or(0, |p| p + 1);
                        all[start..].iter().take(*limit as usize).cloned().collect()
                    }
                    None => all[all.len().saturating_sub(*limit as usize)..].to_vec(),
                };
                Ok(EffectOutput::GitterMessages(page))
            }
            GitterCall::SendMessage {
                room,
                text,
                status,
                reconcile,
                after,
                gitter_user: _,
                parent,
            } => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                if *reconcile {
                    // The author's messages after `after`, oldest first, as the adapter reads.
                    let all = &self.gitter[room].messages;
                    let start = after
                        .as_ref()
                        .and_then(|a| all.iter().position(|m| &m.id == a))
                        .map_or(0, |p| p + 1);
                    return Ok(EffectOutput::Reconciled {
                        mine: all[start..]
                            .iter()
                            .filter(|m| m.from.username == name)
                            .cloned()
                            .collect(),
                        newest: all[start..].last().map(|m| m.id.clone()),
                    });
                }
                let mut m = self.gitter_post(room, &name, text);
                m.status = *status;
                m.parent_id = parent.clone();
                let stored = self
                    .gitter
                    .get_mut(room)
                    .unwrap()
                    .messages
                    .last_mut()
                    .unwrap();
                stored.status = *status;
                stored.parent_id = parent.clone();
                if self.lose_send_answers > 0 {
                    self.lose_send_answers -= 1;
                    return Err(Failure::new(FailureKind::Transient, "answer lost"));
                }
                Ok(EffectOutput::GitterMessage(m))
            }
            GitterCall::EditMessage { room, id, text } => {
                let name = self.tokens.get(token.expose()).cloned().unwrap_or_default();
                let sent = self.sent_at.get(id).copied();
                let Some(m) = self
                    .gitter
                    .get_mut(room)
                    .and_then(|r| r.messages.iter_mut().find(|m| &m.id == id))
                else {
                    return Err(Failure::new(FailureKind::NotFound, "404"));
                };
                if m.from.username != name {
                    return Err(Failure::new(FailureKind::Rejected, "403"));
                }
                if sent.is_some_and(|t| self.now.0 > t.0 + 600_000) {
                    return Err(Failure::new(
                        FailureKind::Rejected,
                        "400 You can no longer edit this message",
                    ));
                }
                m.text = text.clone();
                m.html = text.clone();
                Ok(EffectOutput::GitterMessage(m.clone()))
            }
            GitterCall::DeleteMessage { room, id } => {
                let r = self.gitter.get_mut(room).expect("room");
                let before = r.messages.len();
                r.messages.retain(|m| &m.id != id);
                if r.messages.len() == before {
                    Err(Failure::new(FailureKind::NotFound, "404"))
                } else {
                    Ok(EffectOutput::Done)
                }
            }
        }
    }

    /// The model store answers from every mapping it holds (the bridge holds only its hot
    /// set).
    fn respond_store(&mut self, call: &StoreCall) -> EffectOutput {
        match call {
            StoreCall::PruneMappings { older_than, .. } => {
                // The model store does at once what a store does in batches.
                let before = self.store.messages.len();
                self.store.messages.retain(|m| m.at >= *older_than);
                EffectOutput::Pruned {
                    removed: (before - self.store.messages.len()) as u64,
                    resume: None,
                }
            }
            StoreCall::MappingByGitterId {
                owner, gitter_id, ..
            } => EffectOutput::Mapping(self.store.messages.get(owner, gitter_id).cloned()),
            StoreCall::MappingByEvent {
                owner, event_id, ..
            } => EffectOutput::Mapping(
                self.store
                    .messages
                    .values()
                    .find(|m| &m.owner == owner && m.event_id.as_ref() == Some(event_id))
                    .cloned(),
            ),
        }
    }

    /// Completes one pending effect with the world's answer; streams that open connect.
    /// Effects of a held lane wait, as the driver keeps them.
    pub fn complete_next(&mut self) -> Option<Effect> {
        let pos = self
            .pending
            .iter()
            .position(|e| !self.held.contains_key(&e.lane))?;
        let effect = self.pending.remove(pos)?;
        let result = self.respond(&effect);
        self.log.push(effect.clone());
        self.step(Input::EffectDone {
            id: effect.id,
            result: result.clone(),
        });
        match (&effect.action, &result) {
            (Action::Stream(StreamCall::Open { room, .. }), Ok(_)) => {
                self.down.remove(room);
                self.step(Input::StreamConnected { room: room.clone() });
            }
            // Gitter streams the sender's own messages too (docs/gitter-api.md §5.1).
            (
                Action::Gitter {
                    call:
                        GitterCall::SendMessage {
                            room,
                            reconcile: false,
                            ..
                        },
                    ..
                },
                Ok(EffectOutput::GitterMessage(m)),
            ) if self.live(room) => {
                self.step(Input::GitterMessage {
                    room: room.clone(),
                    message: m.clone(),
                });
            }
            // A lost answer: Gitter stored the message and streams it all the same.
            (
                Action::Gitter {
                    call:
                        GitterCall::SendMessage {
                            room,
                            reconcile: false,
                            ..
                        },
                    ..
                },
                Err(f),
            ) if f.message == "answer lost" && self.live(room) => {
                let message = self.gitter[room].messages.last().cloned().expect("stored");
                self.step(Input::GitterMessage {
                    room: room.clone(),
                    message,
                });
            }
            _ => {}
        }
        Some(effect)
    }

    /// The next `n` tries of `action` fail with `kind`.
    pub fn fail_next(&mut self, action: &'static str, kind: FailureKind, n: usize) {
        let queue = self.failures.entry(action).or_default();
        queue.extend(std::iter::repeat_n(kind, n));
    }

    /// Gitter texts of a room, in order.
    pub fn gitter_texts(&self, room: &GitterRoomId) -> Vec<String> {
        self.gitter[room]
            .messages
            .iter()
            .map(|m| m.text.clone())
            .collect()
    }

    /// Message bodies in a Matrix room (without the senders).
    pub fn bodies(&self, room: &OwnedRoomId) -> Vec<String> {
        self.timeline(room).into_iter().map(|(_, b)| b).collect()
    }

    /// Lets `ms` pass and fires the timer (retries whose time has come run next).
    pub fn wait(&mut self, ms: u64) {
        self.now = self.now.plus_ms(ms);
        self.step(Input::Timer);
    }

    /// Completes pending effects, letting time pass for retries, until nothing is left
    /// to run or to retry.
    pub fn settle_with_retries(&mut self) {
        for _ in 0..1_000 {
            self.settle();
            if self.held.is_empty() {
                return;
            }
            self.wait(10 * 60 * 1000);
        }
        panic!("retries never settled");
    }

    /// Completes pending effects until none are left.
    pub fn settle(&mut self) {
        for _ in 0..10_000 {
            if self.complete_next().is_none() {
                return;
            }
        }
        panic!("effects never settled");
    }

    // ------------------------------------------------------------ Matrix users

    pub fn txn(&mut self, events: Vec<MatrixEvent>) -> Outputs {
        self.txn += 1;
        self.step(Input::Transaction {
            txn_id: AsTxnId::new(self.txn.to_string()),
            events,
        })
    }

    pub fn event(
        &mut self,
        room: &OwnedRoomId,
        sender: &OwnedUserId,
        kind: MatrixEventKind,
    ) -> MatrixEvent {
        MatrixEvent {
            event_id: format!("${}", self.fresh("in")).try_into().unwrap(),
            room_id: room.clone(),
            sender: sender.clone(),
            kind,
        }
    }

    /// `sender` does `kind` in `room`, and the bridge settles.
    pub fn happen(&mut self, room: &OwnedRoomId, sender: &OwnedUserId, kind: MatrixEventKind) {
        let ev = self.event(room, sender, kind);
        self.txn(vec![ev]);
        self.settle();
    }

    /// `user` creates a DM with the bot (others invited too) and invites the bot.
    pub fn dm_bot(&mut self, user: &OwnedUserId, others: &[OwnedUserId]) -> OwnedRoomId {
        let room: OwnedRoomId = format!("!{}", self.fresh("dm")).try_into().unwrap();
        let mut r = MatrixRoom::default();
        r.members.insert(user.clone());
        r.members.extend(others.iter().cloned());
        self.matrix.insert(room.clone(), r);
        let bot = self.bot();
        let ev = self.event(
            &room,
            user,
            MatrixEventKind::Member {
                target: bot,
                membership: Membership::Invite,
            },
        );
        self.txn(vec![ev]);
        self.settle();
        room
    }

    pub fn say(&mut self, room: &OwnedRoomId, user: &OwnedUserId, body: &str) -> MatrixEvent {
        self.say_as(room, user, MsgType::Text, body)
    }

    pub fn say_as(
        &mut self,
        room: &OwnedRoomId,
        user: &OwnedUserId,
        msgtype: MsgType,
        body: &str,
    ) -> MatrixEvent {
        let ev = self.event(
            room,
            user,
            MatrixEventKind::Message {
                msgtype,
                body: body.to_owned(),
                formatted_body: None,
                relation: None,
            },
        );
        self.txn(vec![ev.clone()]);
        ev
    }

    /// `user` edits their message `target` to `body` (an `m.replace`).
    pub fn edit(
        &mut self,
        room: &OwnedRoomId,
        user: &OwnedUserId,
        target: &MatrixEvent,
        body: &str,
    ) {
        let ev = self.event(
            room,
            user,
            MatrixEventKind::Edit {
                target: target.event_id.clone(),
                msgtype: MsgType::Text,
                body: body.to_owned(),
                formatted_body: None,
            },
        );
        self.txn(vec![ev]);
    }

    /// `user` redacts `target`.
    pub fn redact(&mut self, room: &OwnedRoomId, user: &OwnedUserId, target: &MatrixEvent) {
        let ev = self.event(
            room,
            user,
            MatrixEventKind::Redaction {
                target: target.event_id.clone(),
            },
        );
        self.txn(vec![ev]);
    }

    /// The messages of a Gitter room, as (text, parent).
    pub fn gitter_thread_view(
        &self,
        room: &GitterRoomId,
    ) -> Vec<(String, Option<GitterMessageId>)> {
        self.gitter[room]
            .messages
            .iter()
            .map(|m| (m.text.clone(), m.parent_id.clone()))
            .collect()
    }

    /// Notices the bot sent to a room.
    pub fn notices(&self, room: &OwnedRoomId) -> Vec<String> {
        let bot = self.bot();
        self.matrix
            .get(room)
            .map(|r| {
                r.timeline
                    .iter()
                    .filter(|(s, c)| s == &bot && c.msgtype == OutMsgType::Notice)
                    .map(|(_, c)| c.body.clone())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The first portal room the bridge asked for.
    pub fn first_portal_creation(&self) -> NewPortal {
        self.log
            .iter()
            .find_map(|e| match &e.action {
                Action::Matrix(MatrixCall::CreatePortal(new)) => Some((**new).clone()),
                _ => None,
            })
            .expect("a portal creation")
    }

    /// The last message in a room, whole.
    pub fn last_message(&self, room: &OwnedRoomId) -> MatrixContent {
        self.matrix[room]
            .timeline
            .last()
            .expect("a message")
            .1
            .clone()
    }

    pub fn last_notice(&self, room: &OwnedRoomId) -> String {
        self.notices(room).last().cloned().unwrap_or_default()
    }

    /// The login link in the last notice of a room.
    pub fn link_in(&self, room: &OwnedRoomId) -> String {
        let n = self.last_notice(room);
        let start = n
            .find("https://bridge.example.org/login/")
            .expect("a login link");
        n[start..].split_whitespace().next().unwrap().to_owned()
    }

    pub fn request(&mut self) -> RequestId {
        self.next_request += 1;
        RequestId(self.next_request)
    }

    pub fn reply_to(&self, request: RequestId) -> Option<WebReply> {
        self.replies
            .iter()
            .find(|(r, _)| *r == request)
            .map(|(_, w)| w.clone())
    }

    /// Logs `user` in as Gitter user `name` through the link in `control`.
    pub fn login(&mut self, user: &OwnedUserId, control: &OwnedRoomId, name: &str) {
        self.start_login(control, name);
        self.settle();
        let _ = user;
    }

    /// Opens the login link in `control` and comes back from Gitter's OAuth as `name`,
    /// without completing the effects that follow.
    pub fn start_login(&mut self, control: &OwnedRoomId, name: &str) {
        let link = self.link_in(control);
        let token = link.rsplit('/').next().unwrap().to_owned();
        let state = self.confirm_link(&token);
        let req = self.request();
        self.step(Input::OAuthCallback {
            request: req,
            code: Some(Secret::new(format!("code-{name}"))),
            state: Some(state.clone()),
            error: None,
            browser: Some(state),
        });
    }

    /// Opens a login link (the confirm page) and confirms it; returns the OAuth state of the
    /// redirect to Gitter.
    pub fn confirm_link(&mut self, token: &str) -> String {
        let req = self.request();
        self.step(Input::LoginLinkOpened {
            request: req,
            token: token.to_owned(),
        });
        let Some(WebReply::Confirm { .. }) = self.reply_to(req) else {
            panic!("expected a confirm page, got {:?}", self.reply_to(req));
        };
        let req = self.request();
        self.step(Input::LoginLinkConfirmed {
            request: req,
            token: token.to_owned(),
        });
        let Some(WebReply::OAuthRedirect { state, .. }) = self.reply_to(req) else {
            panic!(
                "expected a redirect to Gitter, got {:?}",
                self.reply_to(req)
            );
        };
        state
    }

    /// The portal room of (owner, Gitter room).
    pub fn portal(&self, owner: &OwnedUserId, room: &GitterRoomId) -> Option<OwnedRoomId> {
        self.bridge
            .snapshot()
            .portals
            .get(&(owner.clone(), room.clone()))
            .and_then(|p| p.room_id.clone())
    }

    /// The event of the first message in a Matrix room with this body.
    pub fn sent_event_of(&self, room: &OwnedRoomId, body: &str) -> Option<OwnedEventId> {
        let r = self.matrix.get(room)?;
        let at = r.timeline.iter().position(|(_, c)| c.body == body)?;
        r.events.get(at).cloned()
    }

    /// Message bodies in a Matrix room, with the sender.
    pub fn timeline(&self, room: &OwnedRoomId) -> Vec<(OwnedUserId, String)> {
        self.matrix
            .get(room)
            .map(|r| {
                r.timeline
                    .iter()
                    .map(|(s, c)| (s.clone(), c.body.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Messages in a Gitter room, as (username, text).
    pub fn gitter_timeline(&self, room: &GitterRoomId) -> Vec<(String, String)> {
        self.gitter[room]
            .messages
            .iter()
            .map(|m| (m.from.username.clone(), m.text.clone()))
            .collect()
    }

    /// A user with a control room, logged in as `name`.
    pub fn logged_in_user(&mut self, local: &str, name: &str) -> (OwnedUserId, OwnedRoomId) {
        let user = uid(local);
        let control = self.dm_bot(&user, &[]);
        self.login(&user, &control, name);
        (user, control)
    }
}
