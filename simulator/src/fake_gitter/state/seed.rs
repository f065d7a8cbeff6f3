//! The TOML seed of a fake Gitter (`fixtures/sim/gitter-seed.toml`).

use super::*;

/// The TOML seed (`fixtures/sim/gitter-seed.toml`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GitterSeed {
    #[serde(default)]
    pub users: Vec<SeedUser>,
    #[serde(default)]
    pub rooms: Vec<SeedRoom>,
    #[serde(default)]
    pub one_to_one: Vec<SeedOneToOne>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedUser {
    pub id: Option<String>,
    pub username: String,
    #[serde(alias = "displayName")]
    pub display_name: Option<String>,
    /// A pre-issued personal token (40 lowercase hex chars).
    pub token: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRoom {
    pub id: Option<String>,
    pub uri: String,
    pub name: Option<String>,
    #[serde(default)]
    pub topic: String,
    /// `"PUBLIC"` (default) or `"PRIVATE"`.
    pub security: Option<String>,
    #[serde(default)]
    pub members: Vec<String>,
    #[serde(default)]
    pub admins: Vec<String>,
    /// Generate this many extra users (`<uri-ish>-member-NNN`) and add them,
    /// for rooms with many members.
    #[serde(default)]
    pub filler_members: u32,
    /// Initial history, oldest first.
    #[serde(default)]
    pub messages: Vec<SeedMessage>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedMessage {
    pub from: String,
    pub text: String,
    /// Written this long before the fake starts (history with times of its own).
    #[serde(default)]
    pub minutes_ago: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedOneToOne {
    pub users: [String; 2],
    #[serde(default)]
    pub messages: Vec<SeedMessage>,
}

impl GitterSeed {
    pub fn from_toml(s: &str) -> Result<Self, String> {
        toml::from_str(s).map_err(|e| format!("invalid gitter seed: {e}"))
    }

    pub fn load(path: &std::path::Path) -> Result<Self, String> {
        let s = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        Self::from_toml(&s)
    }
}

impl GitterState {
    /// Load a seed into this state. Seeded history is posted "now".
    pub fn apply_seed(&mut self, seed: &GitterSeed, now_ms: u64) -> Result<(), String> {
        for u in &seed.users {
            let id = self.add_user(u.id.clone(), &u.username, u.display_name.as_deref(), now_ms)?;
            if let Some(t) = &u.token {
                if t.len() != 40 || !t.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                    return Err(format!(
                        "token of {} must be 40 lowercase hex chars",
                        u.username
                    ));
                }
                self.insert_token(t, &id, PERSONAL_CLIENT);
            }
        }
        for r in &seed.rooms {
            let mut members = r.members.clone();
            let prefix: String = r
                .uri
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            for i in 1..=r.filler_members {
                let name = format!("{prefix}-member-{i:03}");
                let display = format!("Member {i} of {}", r.uri);
                self.add_user(None, &name, Some(&display), now_ms)?;
                members.push(name);
            }
            let public = match r.security.as_deref() {
                None | Some("PUBLIC") => true,
                Some("PRIVATE") => false,
                Some(other) => return Err(format!("room {}: unknown security {other}", r.uri)),
            };
            self.add_room(
                r.id.clone(),
                &r.uri,
                r.name.as_deref(),
                &r.topic,
                public,
                &members,
                &r.admins,
                now_ms,
            )?;
            for m in &r.messages {
                self.post_as(&m.from, &r.uri, &m.text, m.sent_ms(now_ms))
                    .map_err(|e| format!("room {} seed message: {e}", r.uri))?;
            }
        }
        for o in &seed.one_to_one {
            let ids = self.usernames_to_ids(&o.users)?;
            let rid = self.one_to_one_room(&ids[0], &ids[1], now_ms);
            for m in &o.messages {
                self.post_as(&m.from, &rid, &m.text, m.sent_ms(now_ms))
                    .map_err(|e| format!("one-to-one seed message: {e}"))?;
            }
        }
        Ok(())
    }
}

impl SeedMessage {
    fn sent_ms(&self, now_ms: u64) -> u64 {
        now_ms.saturating_sub(self.minutes_ago * 60_000)
    }
}
