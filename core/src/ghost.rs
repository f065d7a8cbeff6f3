//! Ghosts: the Matrix puppets of Gitter users.
//!
//! A ghost's Matrix id is made from the configured template (default `gitter_{username}`) at
//! the first sight of the Gitter user and kept in the ghosts table keyed by the Gitter user
//! id, so a renamed Gitter user keeps the same ghost (and its display name follows the new
//! name). A username can pass from one Gitter account to another after a rename: when the
//! id it maps to already belongs to another Gitter user, the newcomer's localpart gets
//! `_` and the first 8 characters of its own (immutable) Gitter id appended — stable, and
//! never the other account's ghost.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, GhostThen, Lane, MatrixCall, Then};
use crate::ids::{GitterRoomId, OwnedUserId};
use crate::input::GitterUser;
use crate::state::{Change, GhostRecord};

/// The localpart of the ghost of `username`: the template with `{username}` replaced,
/// lowercased, and every character outside the Matrix user-id localpart set
/// (`a-z 0-9 . _ = - / +`) escaped as `=xx` per UTF-8 byte, following the spec's
/// "Mapping from other character sets" (`=` itself is escaped so the mapping stays
/// unambiguous).
pub fn ghost_localpart(template: &str, username: &str) -> String {
    let raw = template.replace("{username}", username).to_lowercase();
    let mut out = String::with_capacity(raw.len());
    for b in raw.bytes() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'.' | b'_' | b'-' | b'/' | b'+' => out.push(b as char),
            _ => out.push_str(&format!("={b:02x}")),
        }
    }
    out
}

/// The Gitter username whose ghost has `localpart`, if the template gives exactly it back
/// (the inverse of [`ghost_localpart`]; the escaped `=xx` bytes decoded). Gitter usernames
/// are matched without regard to case in mentions, and a ghost's localpart is lowercase.
fn username_of_localpart(template: &str, localpart: &str) -> Option<String> {
    let (prefix, suffix) = template.split_once("{username}")?;
    let prefix = ghost_localpart(prefix, "");
    let suffix = ghost_localpart(suffix, "");
    let middle = localpart.strip_prefix(&prefix)?.strip_suffix(&suffix)?;
    let bytes = middle.as_bytes();
    let mut raw = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            raw.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            raw.push(bytes[i]);
            i += 1;
        }
    }
    let username = String::from_utf8(raw).ok()?;
    (ghost_localpart(template, &username) == localpart).then_some(username)
}

impl Bridge {
    /// The Gitter mention (`@username`) of a Matrix user who is one of our ghosts, when its
    /// current username is known: from its messages in this run, else from its Matrix id
    /// when that is exactly the template's for the name (a renamed user's ghost keeps its
    /// old id, and a newcomer to a used name gets a suffix, so the id alone could name
    /// somebody else). `None`: the pill's own text is used.
    pub(crate) fn ghost_mention(&self, user: &str) -> Option<String> {
        let user = OwnedUserId::try_from(user).ok()?;
        if !self.is_ghost(&user) {
            return None;
        }
        let ghost = self.state.ghosts.values().find(|g| g.mxid == user)?;
        if let Some(name) = self.relay.username(&ghost.gitter_id) {
            return Some(format!("@{name}"));
        }
        let username = username_of_localpart(&self.config.ghost_template, user.localpart())?;
        // A ghost named with the suffix of a taken name, or one whose user was renamed in an
        // earlier run, gives a name that may be someone else's: only an unsuffixed id whose
        // display name still carries the same username is trusted.
        let named_so = ghost
            .display_name
            .as_deref()
            .is_some_and(|d| d.to_lowercase().contains(&username.to_lowercase()));
        named_so.then(|| format!("@{username}"))
    }

    /// Whether `user` is in the ghost namespace (the template's fixed prefix on our server).
    pub(crate) fn is_ghost(&self, user: &OwnedUserId) -> bool {
        let prefix = self
            .config
            .ghost_template
            .split("{username}")
            .next()
            .unwrap_or_default();
        user.server_name().as_str() == self.config.server_name
            && user.localpart().starts_with(prefix)
            && user != &self.config.bot
    }

    /// The display name a ghost should have.
    fn ghost_display_name(&self, user: &GitterUser) -> String {
        self.config
            .ghost_displayname_template
            .replace("{displayName}", &user.display_name)
            .replace("{username}", &user.username)
    }

    /// Whether `name` is [`Bridge::ghost_display_name`] of `user`, without building it (it is
    /// asked for every message in every portal). `None` when only building it can tell (a
    /// display name holding `{username}`, which the second replacement would change too).
    fn is_ghost_display_name(&self, user: &GitterUser, name: &str) -> Option<bool> {
        if user.display_name.contains("{username}") {
            return None;
        }
        let mut rest = name;
        let mut template = self.config.ghost_displayname_template.as_str();
        while !template.is_empty() {
            let (piece, used) = if let Some(t) = template.strip_prefix("{displayName}") {
                (user.display_name.as_str(), template.len() - t.len())
            } else if let Some(t) = template.strip_prefix("{username}") {
                (user.username.as_str(), template.len() - t.len())
            } else {
                let c = template.chars().next().expect("not empty");
                (&template[..c.len_utf8()], c.len_utf8())
            };
            let Some(r) = rest.strip_prefix(piece) else {
                return Some(false);
            };
            rest = r;
            template = &template[used..];
        }
        Some(rest.is_empty())
    }

    /// The ghost of a Gitter user, recorded at first sight.
    pub(crate) fn ghost_of(&mut self, user: &GitterUser) -> Option<GhostRecord> {
        if let Some(g) = self.state.ghosts.get(&user.id) {
            return Some(g.clone());
        }
        let mut localpart = ghost_localpart(&self.config.ghost_template, &user.username);
        let taken = |bridge: &Bridge, localpart: &str| {
            let mxid = format!("@{localpart}:{}", bridge.config.server_name);
            bridge
                .state
                .ghosts
                .values()
                .any(|g| g.mxid.as_str() == mxid && g.gitter_id != user.id)
        };
        if taken(self, &localpart) {
            let id: String = ghost_localpart("{username}", user.id.as_str())
                .chars()
                .take(8)
                .collect();
            localpart = format!("{localpart}_{id}");
        }
        let mxid = format!("@{localpart}:{}", self.config.server_name);
        let Ok(mxid) = OwnedUserId::try_from(mxid) else {
            self.warn(crate::CoreError::Ignored(format!(
                "no valid ghost id for Gitter user {}",
                user.id
            )));
            return None;
        };
        let record = GhostRecord {
            gitter_id: user.id.clone(),
            mxid,
            display_name: None,
            registered: false,
        };
        self.change(Change::PutGhost(record.clone()));
        Some(record)
    }

    /// Makes sure the ghost of `user` is registered, named and joined in the portal of
    /// (owner, room), emitting the effects in the portal's lane so they run before whatever
    /// the ghost does next there. Returns the ghost's id.
    pub(crate) fn ghost_in_portal(
        &mut self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        user: &GitterUser,
    ) -> Option<OwnedUserId> {
        let key = (owner.clone(), room.clone());
        // The common case, every message in every portal: a ghost registered, named as now
        // and in the portal already needs nothing, and nothing is cloned to find that out.
        if let Some(g) = self.state.ghosts.get(&user.id)
            && g.registered
            && let Some(portal) = self.state.portals.get(&key)
            && portal.room_id.is_some()
            && portal.joined_ghosts.contains(&user.id)
            && let Some(name) = &g.display_name
            && self.is_ghost_display_name(user, name) == Some(true)
            && self.avatar_is_current(user)
        {
            return Some(g.mxid.clone());
        }
        let mut ghost = self.ghost_of(user)?;
        let portal = self.state.portals.get(&key)?.clone();
        let room_id = portal.room_id.clone()?;
        let lane = Lane::Portal {
            owner: owner.clone(),
            room: room.clone(),
        };
        if !ghost.registered {
            // Registered per portal lane until the first success is recorded: registration
            // is idempotent (M_USER_IN_USE is success), ordering within the lane is not.
            if !portal.joined_ghosts.contains(&user.id) {
                self.ask(
                    lane.clone(),
                    Action::Matrix(MatrixCall::RegisterGhost {
                        user: ghost.mxid.clone(),
                    }),
                    Then::Ghost(GhostThen::Registered(ghost.mxid.clone())),
                );
            }
        }
        let name = self.ghost_display_name(user);
        if ghost.display_name.as_deref() != Some(name.as_str()) {
            self.emit(
                lane.clone(),
                Action::Matrix(MatrixCall::SetDisplayName {
                    user: ghost.mxid.clone(),
                    name: name.clone(),
                }),
            );
            ghost.display_name = Some(name);
            self.change(Change::PutGhost(ghost.clone()));
        }
        self.ensure_avatar(user, &ghost);
        if !portal.joined_ghosts.contains(&user.id) {
            self.emit(
                lane.clone(),
                Action::Matrix(MatrixCall::Invite {
                    room: room_id.clone(),
                    sender: self.config.bot.clone(),
                    target: ghost.mxid.clone(),
                }),
            );
            self.emit(
                lane,
                Action::Matrix(MatrixCall::Join {
                    room: room_id,
                    user: ghost.mxid.clone(),
                }),
            );
            let mut portal = portal;
            portal.joined_ghosts.insert(user.id.clone());
            self.change(Change::PutPortal(portal));
        }
        Some(ghost.mxid)
    }

    pub(crate) fn on_ghost_answer(&mut self, then: GhostThen, answer: Answer) {
        match then {
            // A failed registration needs nothing beyond its warning: the next message of
            // the ghost's Gitter user tries again.
            GhostThen::Registered(mxid) => {
                if answer.result.is_ok() {
                    self.on_ghost_registered(&mxid);
                }
            }
            GhostThen::Avatar { user, url } => self.on_picture_uploaded(url, answer, |mxc| {
                Action::Matrix(MatrixCall::SetAvatar { user, mxc })
            }),
        }
    }

    fn on_ghost_registered(&mut self, mxid: &OwnedUserId) {
        let found = self
            .state
            .ghosts
            .values()
            .find(|g| &g.mxid == mxid && !g.registered)
            .cloned();
        if let Some(mut g) = found {
            g.registered = true;
            self.change(Change::PutGhost(g));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{ghost_localpart, username_of_localpart};

    #[test]
    fn a_ghost_localpart_gives_its_username_back() {
        for (template, username) in [
            ("gitter_{username}", "bob"),
            ("gitter_{username}", "bob.builder-1"),
            ("g/{username}/x", "zoë"),
        ] {
            let localpart = ghost_localpart(template, username);
            assert_eq!(
                username_of_localpart(template, &localpart).as_deref(),
                Some(username)
            );
        }
        assert_eq!(username_of_localpart("gitter_{username}", "alice"), None);
        assert_eq!(
            username_of_localpart("gitter_{username}", "gitter_=zz"),
            None
        );
    }
    use crate::{Bridge, Config, GitterUser, GitterUserId};

    #[test]
    fn a_display_name_is_recognised_without_building_it_for_any_template() {
        let user = |display: &str, username: &str| GitterUser {
            id: GitterUserId::new("u1"),
            username: username.into(),
            display_name: display.into(),
            avatar_url: None,
        };
        for template in [
            "{displayName} (Gitter)",
            "{username}",
            "G: {displayName} [{username}] ✓",
            "plain",
            "",
        ] {
            let mut config = Config::with_defaults("example.org");
            config.ghost_displayname_template = template.into();
            let bridge = Bridge::new(config, 1);
            for u in [user("Bob", "bob"), user("Zoë (x)", "zoe"), user("", "e")] {
                let built = bridge.ghost_display_name(&u);
                assert_eq!(
                    bridge.is_ghost_display_name(&u, &built),
                    Some(true),
                    "{template}"
                );
                for other in [format!("{built}x"), format!("x{built}"), "Bob".into()] {
                    if other != built {
                        assert_eq!(
                            bridge.is_ghost_display_name(&u, &other),
                            Some(false),
                            "{template}: {other}"
                        );
                    }
                }
            }
            let tricky = user("{username}", "bob");
            assert_eq!(bridge.is_ghost_display_name(&tricky, "x"), None);
        }
    }

    #[test]
    fn ghost_localpart_lowercases_and_escapes() {
        assert_eq!(
            ghost_localpart("gitter_{username}", "Alice"),
            "gitter_alice"
        );
        assert_eq!(
            ghost_localpart("gitter_{username}", "bob_gitlab"),
            "gitter_bob_gitlab"
        );
        assert_eq!(
            ghost_localpart("gitter_{username}", "a b=c"),
            "gitter_a=20b=3dc"
        );
        assert_eq!(ghost_localpart("gitter_{username}", "é"), "gitter_=c3=a9");
    }
}
