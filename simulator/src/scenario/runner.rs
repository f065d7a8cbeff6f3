//! The runner's view of the world: the scenario's people, their rooms, what each saw, and
//! the requests that several actions share.

use super::*;

impl Runner {
    pub(super) async fn new(scenario: &Scenario, path: &Path) -> Result<Runner, String> {
        let spec = &scenario.world;
        let mut options = WorldOptions::default();
        if let Some(seed) = &spec.seed {
            let seed_path = path.parent().unwrap_or(Path::new(".")).join(seed);
            options.gitter_seed = std::fs::read_to_string(&seed_path)
                .map_err(|e| format!("seed {}: {e}", seed_path.display()))?;
        }
        if let Some(extra) = &spec.bridge {
            options.bridge_extra = extra.clone();
        }
        if let Some(ms) = spec.heartbeat_ms {
            options.heartbeat = Duration::from_millis(ms.max(1));
        }
        if let Some(n) = spec.gitter_rate_limit {
            options.gitter_rate_limit = n;
        }
        if let Some(n) = spec.bridge_requests_per_minute {
            options.bridge_requests_per_minute = n;
        }
        if let Some(ms) = spec.push_backoff_ms {
            options.push_backoff = Duration::from_millis(ms.max(1));
        }
        options.faye = spec.faye.unwrap_or(false);
        let server = options.server_name.clone();
        let mut world = World::without_bridge(options)
            .await
            .map_err(|e| e.to_string())?;
        if let Some(users) = &spec.allowed_users {
            // The world's config lets everyone in; a scenario about permissions narrows it.
            let list: Vec<String> = users.iter().map(|u| format!("\"@{u}:{server}\"")).collect();
            let text = std::fs::read_to_string(&world.config_path).map_err(|e| e.to_string())?;
            if !text.contains("allow_all = true") {
                return Err("the world's config has no `allow_all = true` to replace".into());
            }
            let text = text.replacen(
                "allow_all = true",
                &format!("allow_users = [{}]", list.join(", ")),
                1,
            );
            std::fs::write(&world.config_path, text).map_err(|e| e.to_string())?;
        }
        if let Some(ms) = spec.gitter_rate_window_ms {
            world
                .gitter
                .with_state(|s| s.config.rate_window = Duration::from_millis(ms.max(1)));
        }
        let config = world.config().map_err(|e| e.to_string())?;
        world.start_bridge().await.map_err(|e| e.to_string())?;
        Ok(Runner {
            bot: world.bot(),
            world,
            people: BTreeMap::new(),
            server,
            ghost_template: config.core.ghost_template.clone(),
            hs_token: config.hs_token.expose().to_owned(),
            counter: AtomicU64::new(1),
        })
    }

    pub(super) fn next_number(&self) -> u64 {
        self.counter.fetch_add(1, Ordering::Relaxed)
    }

    // ---- names ----------------------------------------------------------

    pub(super) fn user_id(&self, localpart: &str) -> String {
        format!("@{localpart}:{}", self.server)
    }

    pub(super) fn ghost_id(&self, username: &str) -> String {
        let localpart = self
            .ghost_template
            .replace("{username}", username)
            .to_lowercase();
        format!("@{localpart}:{}", self.server)
    }

    /// The Matrix sender a `from` names.
    pub(super) fn sender_id(&self, from: &str) -> String {
        if from == "bot" {
            self.bot.clone()
        } else {
            self.ghost_id(from)
        }
    }

    pub(super) fn person(&self, user: &str) -> Result<&Person, String> {
        self.people
            .get(user)
            .ok_or_else(|| format!("{user} has not done anything yet"))
    }

    pub(super) fn person_mut(&mut self, user: &str) -> Result<&mut Person, String> {
        self.people
            .get_mut(user)
            .ok_or_else(|| format!("{user} has not done anything yet"))
    }

    /// Registers the user on first use.
    pub(super) fn ensure_person(&mut self, user: &str) -> Result<Human, String> {
        if let Some(p) = self.people.get(user) {
            return Ok(p.human.clone());
        }
        let human = self.world.human(user).map_err(|e| e.to_string())?;
        self.people.insert(
            user.to_owned(),
            Person {
                human: human.clone(),
                dm: None,
                gitter: None,
                page: None,
            },
        );
        Ok(human)
    }

    pub(super) fn dm_of(&self, user: &str) -> Result<String, String> {
        self.person(user)?
            .dm
            .clone()
            .ok_or_else(|| format!("{user} has no DM with the bot yet (add an `open_dm` step)"))
    }

    /// The Gitter room id of a room reference, `@other` being relative to `actor`.
    /// The id of `from`'s newest message with `text` in a Gitter room.
    pub(super) fn gitter_message_id(
        &self,
        room: &str,
        from: &str,
        text: &str,
    ) -> Result<String, String> {
        let messages = self
            .world
            .gitter
            .messages(room)
            .map_err(|e| e.to_string())?;
        messages
            .iter()
            .rev()
            .find(|m| m["text"] == text && m["fromUser"]["username"].as_str() == Some(from))
            .and_then(|m| m["id"].as_str().map(str::to_owned))
            .ok_or_else(|| format!("{from} wrote no {text:?} in {room}"))
    }

    pub(super) fn gitter_room(&self, actor: Option<&str>, room: &str) -> Result<String, String> {
        if let Some(other) = room.strip_prefix('@') {
            let me = actor.ok_or_else(|| {
                format!("{room}: a one-to-one room needs to know whose (a Gitter user)")
            })?;
            let (a, b) = (
                self.world.gitter.user_id(me),
                self.world.gitter.user_id(other),
            );
            let (Some(a), Some(b)) = (a, b) else {
                return Err(format!("{room}: no Gitter user {me} or {other}"));
            };
            return self
                .world
                .gitter
                .with_state(|s| {
                    s.rooms()
                        .find(|r| r.one_to_one && r.members.contains(&a) && r.members.contains(&b))
                        .map(|r| r.id.clone())
                })
                .ok_or_else(|| format!("no one-to-one Gitter room between {me} and {other}"));
        }
        self.world
            .gitter
            .room_id(room)
            .ok_or_else(|| format!("no Gitter room {room}"))
    }

    /// The Matrix room name a room reference stands for, as `user` sees it.
    pub(super) fn room_name(&self, user: &str, room: &str) -> Result<String, String> {
        if let Some(other) = room.strip_prefix('@') {
            let me = self.person(user)?.gitter.clone().ok_or_else(|| {
                format!("{room}: {user} is not logged in to Gitter in this scenario")
            })?;
            self.gitter_room(Some(&me), room)?;
            return self
                .world
                .gitter
                .with_state(|s| s.user_by_username(other).map(|u| u.display_name.clone()))
                .ok_or_else(|| format!("no Gitter user {other}"));
        }
        let gitter_name = self
            .world
            .gitter
            .with_state(|s| s.room_ref(room).map(|r| r.name.clone()));
        Ok(gitter_name.unwrap_or_else(|| room.to_owned()))
    }

    /// The Matrix room of a reference for `user`, whatever their membership (joined first,
    /// then invited, then the newest other).
    pub(super) fn matrix_room(&self, user: &str, room: Option<&str>) -> Result<String, String> {
        let room = match room {
            None | Some("dm") => return self.dm_of(user),
            Some(r) => r,
        };
        let name = self.room_name(user, room)?;
        let uid = self.user_id(user);
        let found = self.world.hs.with_state(|s| {
            let mut rooms: Vec<(String, String)> = s
                .rooms_of(&uid)
                .into_iter()
                .filter(|(r, _)| room_name_of(s, r).as_deref() == Some(name.as_str()))
                .collect();
            // Newest first, then by membership: a room re-created later wins over an old one.
            rooms.reverse();
            rooms.sort_by_key(|(_, m)| match m.as_str() {
                "join" => 0,
                "invite" => 1,
                _ => 2,
            });
            rooms.into_iter().next().map(|(r, _)| r)
        });
        found.ok_or_else(|| format!("{user} has no room named \"{name}\" ({room})"))
    }

    /// The user's rooms with names and memberships, for "seen instead".
    pub(super) fn rooms_seen(&self, user: &str) -> String {
        let uid = self.user_id(user);
        let rooms = self.world.hs.with_state(|s| {
            s.rooms_of(&uid)
                .into_iter()
                .map(|(r, m)| {
                    let name = room_name_of(s, &r).unwrap_or_else(|| "(no name)".to_owned());
                    format!("{name}: {m}")
                })
                .collect::<Vec<_>>()
        });
        if rooms.is_empty() {
            format!("{user} is in no room")
        } else {
            format!("{user}'s rooms: {}", rooms.join("; "))
        }
    }

    pub(super) fn messages(&self, user: &str, room: &str) -> Vec<SeenEvent> {
        self.world.hs.messages_seen(&self.user_id(user), room)
    }

    /// The messages of a room as a user sees them, for "seen instead".
    pub(super) fn timeline_seen(&self, user: &str, room: &str) -> String {
        let messages = self.messages(user, room);
        if messages.is_empty() {
            return format!("{user} sees no message there");
        }
        let skip = messages.len().saturating_sub(15);
        let mut s = format!("{user} sees ({} message(s)):", messages.len());
        for m in &messages[skip..] {
            let _ = write!(
                s,
                "\n  {} {}: {}",
                m.sender,
                m.msgtype.as_deref().unwrap_or("?"),
                short(m.body.as_deref().unwrap_or(""))
            );
            if let Some(f) = m.content.get("formatted_body").and_then(Value::as_str) {
                let _ = write!(s, " [html {}]", short(f));
            }
        }
        s
    }

    pub(super) fn gitter_seen(&self, room_id: &str) -> String {
        let messages = self.world.gitter.messages(room_id).unwrap_or_default();
        if messages.is_empty() {
            return "the Gitter room has no message".to_owned();
        }
        let skip = messages.len().saturating_sub(15);
        let mut s = format!("the Gitter room has {} message(s):", messages.len());
        for m in &messages[skip..] {
            let _ = write!(
                s,
                "\n  {}{}: {}",
                m["fromUser"]["username"].as_str().unwrap_or("?"),
                if m["status"] == true { " (status)" } else { "" },
                short(m["text"].as_str().unwrap_or(""))
            );
        }
        s
    }

    /// The id of `user_id`'s newest message in `room` whose body is `body`.
    pub(super) fn own_event(
        &self,
        user_id: &str,
        room: &str,
        body: &str,
    ) -> Result<String, String> {
        self.world
            .hs
            .messages_seen(user_id, room)
            .into_iter()
            .rev()
            .find(|e| e.sender == user_id && e.body.as_deref() == Some(body))
            .map(|e| e.event_id)
            .ok_or_else(|| format!("{user_id} never said {} in {room}", short(body)))
    }

    pub(super) fn gitter_matching(&self, room_id: &str, from: &str, text: &str) -> Vec<Value> {
        self.world
            .gitter
            .messages(room_id)
            .unwrap_or_default()
            .into_iter()
            .filter(|m| m["fromUser"]["username"] == from && m["text"] == text)
            .collect()
    }

    /// `PUT /_matrix/app/v1/transactions/<txn>` to the bridge: status and body.
    pub(super) async fn put_transaction(
        &self,
        txn: &str,
        body: String,
        auth: Auth,
    ) -> Result<(u16, String), String> {
        let txn: String = url::form_urlencoded::byte_serialize(txn.as_bytes()).collect();
        let url = format!(
            "http://{}/_matrix/app/v1/transactions/{txn}",
            self.world.as_addr
        );
        let mut request = self
            .world
            .http
            .put(url)
            .header("content-type", "application/json")
            .body(body);
        match auth {
            Auth::HsToken => request = request.bearer_auth(&self.hs_token),
            Auth::Wrong => request = request.bearer_auth("not-the-hs-token"),
            Auth::None => {}
        }
        let response = request.send().await.map_err(|e| e.to_string())?;
        let status = response.status().as_u16();
        Ok((status, response.text().await.unwrap_or_default()))
    }

    pub(super) async fn open_dm(
        &mut self,
        user: &str,
        name: Option<&str>,
    ) -> Result<String, String> {
        let human = self.ensure_person(user)?;
        let mut body = serde_json::json!({
            "preset": "trusted_private_chat",
            "is_direct": true,
            "invite": [self.bot],
        });
        if let Some(name) = name {
            body["name"] = Value::from(name);
        }
        let room = self
            .world
            .hs
            .create_room(&human.user_id, body)
            .map_err(|e| format!("create the DM: {e:?}"))?;
        self.person_mut(user)?.dm = Some(room.clone());
        let bot = self.bot.clone();
        self.world
            .wait_hs("the bot's first words in the DM", DEFAULT_WITHIN, |hs| {
                hs.messages_seen(&human.user_id, &room)
                    .iter()
                    .any(|m| m.sender == bot)
            })
            .await
            .map_err(|e| format!("{e}; {}", self.rooms_seen(user)))?;
        Ok(room)
    }

    pub(super) async fn login(
        &mut self,
        user: &str,
        gitter_user: &str,
        open_portals: bool,
    ) -> Result<Option<String>, String> {
        let human = self.ensure_person(user)?;
        let dm = match self.person(user)?.dm.clone() {
            Some(dm) => dm,
            None => self.open_dm(user, None).await?,
        };
        self.world
            .login(&human, &dm, gitter_user)
            .await
            .map_err(|e| format!("{e}; {}", self.timeline_seen(user, &dm)))?;
        self.person_mut(user)?.gitter = Some(gitter_user.to_owned());
        if !open_portals {
            return Ok(None);
        }
        // The portals the bridge should open: one per Gitter room the user is a member of.
        let rooms: Vec<(String, String, String)> = self.world.gitter.with_state(|s| {
            let Some(me) = s.user_by_username(gitter_user).map(|u| u.id.clone()) else {
                return Vec::new();
            };
            s.rooms()
                .filter(|r| r.members.contains(&me))
                .map(|r| {
                    let other = r
                        .one_to_one
                        .then(|| r.members.iter().find(|m| **m != me).and_then(|m| s.user(m)))
                        .flatten();
                    match other {
                        Some(u) => (
                            r.id.clone(),
                            u.display_name.clone(),
                            format!("@{} (one-to-one)", u.username),
                        ),
                        None => (
                            r.id.clone(),
                            r.name.clone(),
                            r.uri.clone().unwrap_or_else(|| r.name.clone()),
                        ),
                    }
                })
                .collect()
        });
        let uid = human.user_id.clone();
        let has_portal = |hs: &crate::fake_hs::FakeHomeserver, name: &str| {
            hs.with_state(|s| s.room_named_for(&uid, name)).is_some()
        };
        self.world
            .wait_hs("a portal for every Gitter room", DEFAULT_WITHIN, |hs| {
                rooms.iter().all(|(_, name, _)| has_portal(hs, name))
            })
            .await
            .map_err(|e| {
                let missing: Vec<&str> = rooms
                    .iter()
                    .filter(|(_, name, _)| !has_portal(&self.world.hs, name))
                    .map(|(_, _, label)| label.as_str())
                    .collect();
                format!(
                    "{e}: none for {}; {}",
                    missing.join(", "),
                    self.rooms_seen(user)
                )
            })?;
        self.world
            .accept_invites(&human)
            .map_err(|e| e.to_string())?;
        self.world
            .wait_gitter("a stream for every room", DEFAULT_WITHIN, |g| {
                // An HTTP stream or a realtime subscription.
                rooms.iter().all(|(id, _, _)| g.is_read(id))
            })
            .await
            .map_err(|e| {
                let silent: Vec<&str> = rooms
                    .iter()
                    .filter(|(id, _, _)| !self.world.gitter.is_read(id))
                    .map(|(_, _, label)| label.as_str())
                    .collect();
                format!("{e}: no stream for {}", silent.join(", "))
            })?;
        let labels: Vec<&str> = rooms.iter().map(|(_, _, l)| l.as_str()).collect();
        Ok(Some(format!(
            "portals joined and listened to: {}",
            labels.join(", ")
        )))
    }

    /// Replaces the `${...}` names of a raw body.
    pub(super) fn expand(&self, text: &str) -> Result<String, String> {
        let re = regex::Regex::new(r"\$\{([^}]*)\}").map_err(|e| e.to_string())?;
        let mut out = String::new();
        let mut last = 0;
        for cap in re.captures_iter(text) {
            let whole = cap.get(0).expect("group 0 always matches");
            out.push_str(&text[last..whole.start()]);
            last = whole.end();
            let inner = &cap[1];
            let (key, arg) = inner.split_once(':').unwrap_or((inner, ""));
            let value = match key {
                "bot" => self.bot.clone(),
                "user" => self.user_id(arg),
                "ghost" => self.ghost_id(arg),
                "dm" => self.dm_of(arg)?,
                "room" => {
                    let (user, room) = arg
                        .split_once(':')
                        .ok_or_else(|| format!("${{room:USER:ROOM}}, not ${{{inner}}}"))?;
                    self.matrix_room(user, Some(room))?
                }
                // 43 characters after `$`, like a room version 4+ event id.
                "event_id" => format!("$scenarioraweventid{:024}", self.next_number()),
                "now" => self.world.hs.now_ms().to_string(),
                _ => return Err(format!("unknown name ${{{inner}}} in a raw body")),
            };
            out.push_str(&value);
        }
        out.push_str(&text[last..]);
        Ok(out)
    }

    // ---- expectations ---------------------------------------------------

    pub(super) async fn expect(&self, e: &Expect) -> Result<Option<String>, String> {
        let settle = e.settle.unwrap_or_else(|| e.what.default_settle());
        let deadline = Instant::now() + e.within;
        let mut holding_since: Option<Instant> = None;
        loop {
            match self.check(&e.what) {
                Check::Holds => {
                    let since = *holding_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= settle {
                        return Ok(None);
                    }
                }
                Check::Broken(seen) => return Err(seen),
                Check::NotYet(seen) => {
                    if let Some(since) = holding_since {
                        return Err(format!(
                            "it held, then stopped holding after {} ms: {seen}",
                            since.elapsed().as_millis()
                        ));
                    }
                    if Instant::now() >= deadline {
                        return Err(format!(
                            "not within {:.1}s; seen instead: {seen}",
                            e.within.as_secs_f64()
                        ));
                    }
                }
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}
