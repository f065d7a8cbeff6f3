//! What each action does to the world.

use super::*;

impl Runner {
    // ---- actions --------------------------------------------------------

    pub(super) async fn act(&mut self, action: &Action) -> Result<Option<String>, String> {
        let hs_err = |e: crate::fake_hs::MatrixError| format!("the homeserver said {e:?}");
        let gitter_err = |e: crate::fake_gitter::ApiError| format!("Gitter said {e:?}");
        match action {
            Action::Register { user } => {
                if self.people.contains_key(user) {
                    return Err(format!("{user} is already registered"));
                }
                let human = self.ensure_person(user)?;
                Ok(Some(human.user_id))
            }
            Action::OpenDm { user, name } => {
                let room = self.open_dm(user, name.as_deref()).await?;
                let notices = self.world.bot_notices(&self.person(user)?.human, &room);
                Ok(notices.last().map(|n| format!("bot: {}", short(n))))
            }
            Action::CreateGroup {
                user,
                name,
                members,
            } => {
                let human = self.ensure_person(user)?;
                let mut ids = Vec::new();
                for m in members {
                    ids.push(self.ensure_person(m)?.user_id);
                }
                let room = self
                    .world
                    .hs
                    .create_room(
                        &human.user_id,
                        serde_json::json!({ "preset": "private_chat", "name": name, "invite": ids }),
                    )
                    .map_err(hs_err)?;
                for id in &ids {
                    self.world.hs.join(id, &room).map_err(hs_err)?;
                }
                self.world
                    .hs
                    .invite(&human.user_id, &room, &self.bot)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::InviteBot { user, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, Some(room))?;
                self.world
                    .hs
                    .invite(&human.user_id, &room, &self.bot)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Say {
                user,
                text,
                room,
                repeat,
            } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                let text = text.repeat(repeat.unwrap_or(1));
                self.world
                    .hs
                    .send_text(&human.user_id, &room, &text)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Edit {
                user,
                of,
                text,
                room,
            } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                let target = self.own_event(&human.user_id, &room, of)?;
                let content = serde_json::json!({
                    "msgtype": "m.text",
                    "body": format!("* {text}"),
                    "m.new_content": { "msgtype": "m.text", "body": text },
                    "m.relates_to": { "rel_type": "m.replace", "event_id": target },
                });
                self.world
                    .hs
                    .send_event(&human.user_id, &room, "m.room.message", content)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Redact { user, of, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                let target = self.own_event(&human.user_id, &room, of)?;
                self.world
                    .hs
                    .redact(&human.user_id, &room, &target)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Emote { user, text, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, room.as_deref())?;
                self.world
                    .hs
                    .send_emote(&human.user_id, &room, text)
                    .map_err(hs_err)?;
                Ok(None)
            }
            Action::Leave { user, room } => {
                let human = self.ensure_person(user)?;
                let room = self.matrix_room(user, Some(room))?;
                self.world.hs.leave(&human.user_id, &room).map_err(hs_err)?;
                Ok(None)
            }
            Action::Login {
                user,
                gitter_user,
                open_portals,
            } => {
                let gitter_user = gitter_user.as_deref().unwrap_or(user);
                self.login(user, gitter_user, *open_portals).await
            }
            Action::OpenLoginLink {
                user,
                gitter_user,
                until_status,
                within_ms,
            } => {
                let gitter_user = gitter_user.as_deref().unwrap_or(user).to_owned();
                let dm = self.dm_of(user)?;
                let human = self.person(user)?.human.clone();
                let link = self
                    .world
                    .bot_notices(&human, &dm)
                    .iter()
                    .rev()
                    .find_map(|n| login_link(n))
                    .ok_or_else(|| format!("the bot never sent {user} a login link"))?;
                if let Some(want) = until_status {
                    // Previews only (they spend nothing) until the page says what is awaited.
                    let deadline =
                        Instant::now() + within_ms.map_or(DEFAULT_WITHIN, Duration::from_millis);
                    loop {
                        let (status, text) = self
                            .world
                            .peek_login_link(&link)
                            .await
                            .map_err(|e| e.to_string())?;
                        if status == *want {
                            break;
                        }
                        if Instant::now() >= deadline {
                            return Err(format!(
                                "the link still gives HTTP {status}, not {want}: {}",
                                short(&page_text(&text))
                            ));
                        }
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                }
                let (status, text) = self
                    .world
                    .browse_login_link(&link, &gitter_user)
                    .await
                    .map_err(|e| e.to_string())?;
                let note = format!("HTTP {status}: {}", short(&page_text(&text)));
                if status == 200 {
                    self.person_mut(user)?.gitter = Some(gitter_user);
                }
                self.person_mut(user)?.page = Some((status, text));
                Ok(Some(note))
            }
            Action::AcceptInvites { user } => {
                let human = self.ensure_person(user)?;
                let joined = self
                    .world
                    .accept_invites(&human)
                    .map_err(|e| e.to_string())?;
                let names: Vec<String> = joined
                    .iter()
                    .map(|r| {
                        self.world
                            .hs
                            .with_state(|s| room_name_of(s, r))
                            .unwrap_or_else(|| r.clone())
                    })
                    .collect();
                Ok(Some(if names.is_empty() {
                    "no invite pending".to_owned()
                } else {
                    format!("joined {}", names.join(", "))
                }))
            }
            Action::GitterPost {
                from,
                room,
                text,
                status,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let posted = if *status {
                    self.world.gitter.post_status(&rid, from, text)
                } else {
                    self.world.gitter.post_message(&rid, from, text)
                };
                posted.map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterJoin { user, room } => {
                let rid = self.gitter_room(Some(user), room)?;
                self.world.gitter.join(&rid, user).map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterLeave { user, room } => {
                let rid = self.gitter_room(Some(user), room)?;
                self.world.gitter.leave(&rid, user).map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterEdit {
                from,
                room,
                text,
                new_text,
            } => {
                let rid = self.gitter_room(Some(from), room)?;
                let id = self.gitter_message_id(&rid, from, text)?;
                let now = self.world.gitter.now_ms();
                self.world
                    .gitter
                    .with_state(|s| s.edit_as(from, &rid, &id, new_text, now))
                    .map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterDelete { from, room, text } => {
                let rid = self.gitter_room(Some(from), room)?;
                let id = self.gitter_message_id(&rid, from, text)?;
                self.world
                    .gitter
                    .with_state(|s| s.delete_as(from, &rid, &id))
                    .map_err(gitter_err)?;
                Ok(None)
            }
            Action::GitterTopic { room, topic } => {
                let rid = self.gitter_room(None, room)?;
                self.world
                    .gitter
                    .with_state(|s| s.set_room_details(&rid, None, Some(topic)))
                    .map_err(gitter_err)?;
                Ok(None)
            }
            Action::FayeFault {
                forget_clients,
                skip_sequence,
            } => {
                let forgotten = self.world.gitter.with_state(|s| {
                    if *skip_sequence {
                        s.faye_skip_sequence();
                    }
                    if *forget_clients {
                        s.faye_forget_clients()
                    } else {
                        0
                    }
                });
                Ok(Some(format!("{forgotten} client(s) forgotten")))
            }
            Action::GitterStreamLine { room, line } => {
                let rid = self.gitter_room(None, room)?;
                match self.world.gitter.send_stream_line(&rid, line) {
                    0 => Err(format!("no stream of {room} is open")),
                    n => Ok(Some(format!("{n} stream(s) got it"))),
                }
            }
            Action::DropStreams { room } => {
                let rid = match room {
                    Some(r) => Some(self.gitter_room(None, r)?),
                    None => None,
                };
                let n = self.world.gitter.drop_streams(rid.as_deref());
                Ok(Some(format!("{n} stream(s) closed")))
            }
            Action::GitterFail {
                status,
                next,
                for_ms,
            } => {
                match (next, for_ms) {
                    (Some(n), _) => self.world.gitter.fail_next(*n, *status),
                    (None, Some(ms)) => self
                        .world
                        .gitter
                        .fail_for(Duration::from_millis(*ms), *status),
                    (None, None) => return Err("give `next` or `for_ms`".into()),
                }
                Ok(None)
            }
            Action::GitterDelay { ms } => {
                self.world.gitter.set_delay(Duration::from_millis(*ms));
                Ok(None)
            }
            Action::RevokeToken { gitter_user } => {
                let token = self
                    .world
                    .gitter
                    .token_for(gitter_user)
                    .ok_or_else(|| format!("no Gitter user {gitter_user}"))?;
                if self.world.gitter.revoke_token(&token) {
                    Ok(None)
                } else {
                    Err(format!("{gitter_user} had no token to revoke"))
                }
            }
            Action::HsReplayTransaction {
                containing,
                new_txn_id,
            } => {
                let delivered = self.world.hs.delivered_transactions();
                let txn = delivered
                    .iter()
                    .rev()
                    .find(|t| match containing {
                        Some(c) => t.events.iter().any(|e| e["content"]["body"] == c.as_str()),
                        None => true,
                    })
                    .ok_or_else(|| "no such delivered transaction".to_owned())?;
                let body = self.world.hs.with_state(|s| s.transaction_body(txn));
                let id = if *new_txn_id {
                    format!("scenario-replay-{}", self.next_number())
                } else {
                    txn.txn_id.clone()
                };
                let (status, text) = self
                    .put_transaction(&id, body.to_string(), Auth::HsToken)
                    .await?;
                let note = format!(
                    "transaction {id} ({} events): HTTP {status} {}",
                    txn.events.len(),
                    short(&text)
                );
                if status == 200 {
                    Ok(Some(note))
                } else {
                    Err(note)
                }
            }
            Action::HsFailPushes { next } => {
                self.world.hs.fail_push_next(*next);
                Ok(None)
            }
            Action::HsFailCs {
                status,
                next,
                for_ms,
            } => {
                match (next, for_ms) {
                    (Some(n), _) => self.world.hs.fail_cs_next(*n, *status),
                    (None, Some(ms)) => self
                        .world
                        .hs
                        .fail_cs_for(Duration::from_millis(*ms), *status),
                    (None, None) => return Err("give `next` or `for_ms`".into()),
                }
                Ok(None)
            }
            Action::HsDelay { ms } => {
                self.world.hs.set_cs_delay(Duration::from_millis(*ms));
                Ok(None)
            }
            Action::ClearFaults => {
                self.world.gitter.clear_faults();
                self.world.hs.clear_faults();
                Ok(None)
            }
            Action::KillBridge => {
                if !self.world.bridge_running() {
                    return Err("the bridge is not running".into());
                }
                self.world.kill_bridge().await;
                Ok(None)
            }
            Action::StopBridge => {
                if !self.world.bridge_running() {
                    return Err("the bridge is not running".into());
                }
                self.world.stop_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::StartBridge => {
                self.world.start_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::RestartBridge => {
                self.world.kill_bridge().await;
                self.world.start_bridge().await.map_err(|e| e.to_string())?;
                Ok(None)
            }
            Action::AsPut {
                body,
                txn,
                auth,
                expect_status,
            } => {
                let body = self.expand(body)?;
                let txn = match txn {
                    Some(t) => t.clone(),
                    None => format!("scenario-raw-{}", self.next_number()),
                };
                let (status, text) = self.put_transaction(&txn, body, *auth).await?;
                let note = format!("HTTP {status} {}", short(&text));
                match expect_status {
                    Some(want) if *want != status => {
                        Err(format!("expected HTTP {want}, got {note}"))
                    }
                    _ => Ok(Some(note)),
                }
            }
        }
    }
}
