//! Whether each expectation holds, and if not, what was seen instead.

use super::*;

impl Runner {
    pub(super) fn check(&self, what: &Expectation) -> Check {
        match self.try_check(what) {
            Ok(c) => c,
            // A room or a person that does not exist yet may appear later.
            Err(e) => Check::NotYet(e),
        }
    }

    pub(super) fn try_check(&self, what: &Expectation) -> Result<Check, String> {
        Ok(match what {
            Expectation::Notice {
                user,
                contains,
                room,
                anywhere,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let uid = self.user_id(user);
                let messages = self.messages(user, &room);
                let start = if *anywhere {
                    0
                } else {
                    messages
                        .iter()
                        .rposition(|m| m.sender == uid)
                        .map_or(0, |i| i + 1)
                };
                let notices: Vec<&str> = messages[start..]
                    .iter()
                    .filter(|m| m.sender == self.bot)
                    .filter_map(|m| m.body.as_deref())
                    .collect();
                if notices.iter().any(|n| n.contains(contains.as_str())) {
                    Check::Holds
                } else if notices.is_empty() {
                    Check::NotYet(format!(
                        "no bot notice in scope; {}",
                        self.timeline_seen(user, &room)
                    ))
                } else {
                    Check::NotYet(format!("the bot said:\n  {}", notices.join("\n  ")))
                }
            }
            Expectation::Message {
                user,
                room,
                from,
                body,
                msgtype,
                formatted_contains,
                formatted_lacks,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let sender = self.sender_id(from);
                let candidates: Vec<SeenEvent> = self
                    .messages(user, &room)
                    .into_iter()
                    .filter(|m| m.sender == sender && m.body.as_deref() == Some(body.as_str()))
                    .collect();
                if candidates.is_empty() {
                    return Ok(Check::NotYet(self.timeline_seen(user, &room)));
                }
                let problems: Vec<String> = candidates
                    .iter()
                    .map(|m| {
                        let formatted = m
                            .content
                            .get("formatted_body")
                            .and_then(Value::as_str)
                            .unwrap_or("");
                        let mut wrong = Vec::new();
                        if let Some(t) = msgtype
                            && m.msgtype.as_deref() != Some(t.as_str())
                        {
                            wrong.push(format!("msgtype is {:?}", m.msgtype));
                        }
                        if let Some(f) = formatted_contains
                            && !formatted.contains(f.as_str())
                        {
                            wrong.push(format!("formatted_body is {formatted:?}"));
                        }
                        if let Some(f) = formatted_lacks
                            && formatted.contains(f.as_str())
                        {
                            wrong.push(format!("formatted_body is {formatted:?}"));
                        }
                        wrong.join(", ")
                    })
                    .collect();
                if problems.iter().any(String::is_empty) {
                    Check::Holds
                } else {
                    Check::Broken(format!(
                        "the message is there, but its {}",
                        problems.join("; ")
                    ))
                }
            }
            Expectation::MessageCount {
                user,
                room,
                from,
                body,
                contains,
                count,
            } => {
                let room = self.matrix_room(user, room.as_deref())?;
                let uid = self.user_id(user);
                let sender = from.as_deref().map(|f| self.sender_id(f));
                let n = self
                    .messages(user, &room)
                    .iter()
                    .filter(|m| match &sender {
                        Some(s) => &m.sender == s,
                        None => m.sender != uid,
                    })
                    .filter(|m| {
                        let b = m.body.as_deref().unwrap_or("");
                        match (body, contains) {
                            (Some(want), _) => b == want,
                            (None, Some(piece)) => b.contains(piece.as_str()),
                            (None, None) => true,
                        }
                    })
                    .count();
                let seen = || format!("{n} of them; {}", self.timeline_seen(user, &room));
                match n.cmp(count) {
                    std::cmp::Ordering::Equal => Check::Holds,
                    std::cmp::Ordering::Less => Check::NotYet(seen()),
                    std::cmp::Ordering::Greater => Check::Broken(seen()),
                }
            }
            Expectation::Sequence {
                user,
                room,
                from,
                bodies,
            } => {
                let room = self.matrix_room(user, Some(room))?;
                let uid = self.user_id(user);
                let sender = from.as_deref().map(|f| self.sender_id(f));
                let got: Vec<String> = self
                    .messages(user, &room)
                    .into_iter()
                    .filter(|m| match &sender {
                        Some(s) => &m.sender == s,
                        None => m.sender != uid,
                    })
                    .filter_map(|m| m.body)
                    .filter(|b| bodies.contains(b))
                    .collect();
                if &got == bodies {
                    Check::Holds
                } else if bodies.starts_with(&got) {
                    Check::NotYet(format!(
                        "only {} of {}; {}",
                        got.len(),
                        bodies.len(),
                        self.timeline_seen(user, &room)
                    ))
                } else {
                    Check::Broken(format!(
                        "got {got:?}, which is not the start of the expected order; {}",
                        self.timeline_seen(user, &room)
                    ))
                }
            }
            Expectation::NoEcho { user, room } => {
                let room = self.matrix_room(user, Some(room))?;
                let me =
                    self.person(user)?.gitter.clone().ok_or_else(|| {
                        format!("{user} is not logged in to Gitter in this scenario")
                    })?;
                let ghost = self.ghost_id(&me);
                let messages = self.messages(user, &room);
                // An echo repeats what the user sent from Matrix. Their ghost may speak
                // otherwise: what they wrote on Gitter itself, before (history) or in
                // another client.
                let own = self.user_id(user);
                let sent: Vec<&str> = messages
                    .iter()
                    .filter(|m| m.sender == own)
                    .filter_map(|m| m.body.as_deref())
                    .collect();
                let echoes: Vec<String> = messages
                    .iter()
                    .filter(|m| m.sender == ghost)
                    .filter_map(|m| m.body.clone())
                    .filter(|b| sent.contains(&b.as_str()))
                    .collect();
                if echoes.is_empty() {
                    Check::Holds
                } else {
                    Check::Broken(format!("{ghost} said {echoes:?}"))
                }
            }
            Expectation::GhostName {
                user,
                room,
                ghost,
                name,
            } => {
                let room = self.matrix_room(user, Some(room))?;
                let ghost_id = self.ghost_id(ghost);
                let current = self
                    .world
                    .hs
                    .timeline(&self.user_id(user), &room)
                    .into_iter()
                    .rev()
                    .find(|e| {
                        e.kind == "m.room.member" && e.state_key.as_deref() == Some(&ghost_id)
                    })
                    .map(|e| e.content);
                match current {
                    Some(c) if c["displayname"] == name.as_str() => Check::Holds,
                    Some(c) => Check::NotYet(format!(
                        "{ghost_id} is shown with {} ({})",
                        c["displayname"], c["membership"]
                    )),
                    None => Check::NotYet(format!("{ghost_id} never appeared in the room")),
                }
            }
            Expectation::Redacted {
                user,
                room,
                from,
                body,
            } => {
                let room = self.matrix_room(user, Some(room))?;
                let sender = self.sender_id(from);
                let visible = self
                    .messages(user, &room)
                    .iter()
                    .any(|m| m.sender == sender && m.body.as_deref() == Some(body.as_str()));
                if visible {
                    Check::NotYet(format!("still there; {}", self.timeline_seen(user, &room)))
                } else {
                    Check::Holds
                }
            }
            Expectation::Topic { user, room, topic } => {
                let room_id = self.matrix_room(user, Some(room))?;
                let now = self.world.hs.with_state(|s| {
                    s.room_info(&room_id)?
                        .state_content("m.room.topic", "")?
                        .get("topic")?
                        .as_str()
                        .map(str::to_owned)
                });
                if now.as_deref() == Some(topic.as_str()) {
                    Check::Holds
                } else {
                    Check::NotYet(format!("the topic is {now:?}"))
                }
            }
            Expectation::Invited { user, room } => {
                let name = self.room_name(user, room)?;
                let uid = self.user_id(user);
                let invited = self.world.hs.with_state(|s| {
                    s.rooms_of(&uid).into_iter().any(|(r, m)| {
                        m == "invite" && room_name_of(s, &r).as_deref() == Some(name.as_str())
                    })
                });
                if invited {
                    Check::Holds
                } else {
                    Check::NotYet(self.rooms_seen(user))
                }
            }
            Expectation::Membership {
                user,
                room,
                who,
                is,
            } => {
                let room_id = self.matrix_room(user, Some(room))?;
                let who_id = match who.as_deref() {
                    Some("bot") => self.bot.clone(),
                    Some(w) => match w.strip_prefix("ghost:") {
                        Some(username) => self.ghost_id(username),
                        None => self.user_id(w),
                    },
                    None => self.user_id(user),
                };
                let membership = self.world.hs.with_state(|s| {
                    s.room_info(&room_id)
                        .and_then(|r| r.membership(&who_id).map(str::to_owned))
                });
                let membership = membership.unwrap_or_else(|| "none".to_owned());
                if &membership == is {
                    Check::Holds
                } else {
                    Check::NotYet(format!("{who_id} is `{membership}`"))
                }
            }
            Expectation::GitterMessage {
                room,
                from,
                text,
                repeat,
                status,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let text = text.repeat(repeat.unwrap_or(1));
                let found = self.gitter_matching(&rid, from, &text);
                let right = found
                    .iter()
                    .any(|m| status.is_none_or(|s| (m["status"] == true) == s));
                if right {
                    Check::Holds
                } else {
                    Check::NotYet(self.gitter_seen(&rid))
                }
            }
            Expectation::GitterCount {
                room,
                from,
                text,
                repeat,
                count,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let text = text.repeat(repeat.unwrap_or(1));
                let n = self.gitter_matching(&rid, from, &text).len();
                let seen = || format!("{n} of them; {}", self.gitter_seen(&rid));
                match n.cmp(count) {
                    std::cmp::Ordering::Equal => Check::Holds,
                    std::cmp::Ordering::Less => Check::NotYet(seen()),
                    std::cmp::Ordering::Greater => Check::Broken(seen()),
                }
            }
            Expectation::GitterAbsent { room, from, text } => {
                let rid = self.gitter_room(Some(from), room)?;
                match self.gitter_matching(&rid, from, text).len() {
                    0 => Check::Holds,
                    n => Check::NotYet(format!("{n} of them; {}", self.gitter_seen(&rid))),
                }
            }
            Expectation::GitterMember { room, user, member } => {
                let rid = self.gitter_room(Some(user), room)?;
                let members = self.world.gitter.members(&rid);
                if members.contains(user) == *member {
                    Check::Holds
                } else {
                    Check::NotYet(format!("members: {}", members.join(", ")))
                }
            }
            Expectation::BridgeListening { room, user, reader } => {
                let actor = match user {
                    Some(u) => self.person(u)?.gitter.clone(),
                    None => None,
                };
                let rid = self.gitter_room(actor.as_deref(), room)?;
                let readers = self.world.gitter.with_state(|s| s.stream_readers(&rid));
                let right = match reader {
                    Some(r) => readers.contains(r),
                    None => !readers.is_empty(),
                };
                if right {
                    Check::Holds
                } else if readers.is_empty() {
                    Check::NotYet(format!(
                        "no stream open for {room}; {} stream(s) in all",
                        self.world.gitter.stream_count(None)
                    ))
                } else {
                    Check::NotYet(format!("{room} is read as {}", readers.join(", ")))
                }
            }
            Expectation::LoginPage {
                user,
                contains,
                status,
            } => {
                let Some((got, text)) = &self.person(user)?.page else {
                    return Ok(Check::Broken(format!(
                        "{user} opened no login link (add an `open_login_link` step)"
                    )));
                };
                if status.is_none_or(|s| s == *got) && text.contains(contains.as_str()) {
                    Check::Holds
                } else {
                    // The page will not change by waiting.
                    Check::Broken(format!("HTTP {got}: {}", page_text(text)))
                }
            }
            Expectation::BridgeUp => {
                let listening = |addr| {
                    std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
                };
                match (
                    self.world.bridge_running(),
                    listening(self.world.as_addr),
                    listening(self.world.web_addr),
                ) {
                    (true, true, true) => Check::Holds,
                    (running, as_api, web) => Check::NotYet(format!(
                        "running: {running}, AS API listening: {as_api}, pages listening: {web}"
                    )),
                }
            }
            Expectation::HsDelayed { at_least } => {
                let n = self.world.hs.delayed_requests();
                if n >= *at_least {
                    Check::Holds
                } else {
                    Check::NotYet(format!("{n} requests wait"))
                }
            }
            Expectation::HsRetried { at_least } => {
                let attempts = self.world.hs.push_attempts();
                let retried = attempts
                    .iter()
                    .enumerate()
                    .filter(|(i, (id, ok))| {
                        !ok && attempts[i + 1..].iter().any(|(id2, ok2)| *ok2 && id2 == id)
                    })
                    .count();
                if retried >= *at_least {
                    Check::Holds
                } else {
                    let failed = attempts.iter().filter(|(_, ok)| !ok).count();
                    Check::NotYet(format!(
                        "{retried} retried; {} attempts, {failed} failed",
                        attempts.len()
                    ))
                }
            }
            Expectation::GitterFaultsSpent => match self.world.gitter.pending_failures() {
                0 => Check::Holds,
                n => Check::NotYet(format!("{n} injected failure(s) not served yet")),
            },
            Expectation::HsDelivered { body } => {
                let delivered = self.world.hs.delivered_transactions();
                if delivered.iter().any(|t| {
                    t.events
                        .iter()
                        .any(|e| e["content"]["body"] == body.as_str())
                }) {
                    Check::Holds
                } else {
                    let attempts = self.world.hs.push_attempts();
                    Check::NotYet(format!(
                        "{} transaction(s) delivered, {} push attempt(s), {} failed",
                        delivered.len(),
                        attempts.len(),
                        attempts.iter().filter(|(_, ok)| !ok).count()
                    ))
                }
            }
        })
    }
}

/// A room's `m.room.name`.
pub(super) fn room_name_of(state: &crate::fake_hs::HsState, room: &str) -> Option<String> {
    state
        .room_info(room)?
        .state_content("m.room.name", "")?
        .get("name")?
        .as_str()
        .map(str::to_owned)
}

/// The words of an HTML page, for a transcript.
pub(super) fn page_text(html: &str) -> String {
    let head = regex::Regex::new(r"(?is)<head.*?</head>").expect("a valid regex");
    let tags = regex::Regex::new(r"<[^>]*>").expect("a valid regex");
    let text = head.replace_all(html, " ");
    let text = tags.replace_all(&text, " ");
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}
