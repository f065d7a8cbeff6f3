//! Bot commands, read in a user's control room.
//!
//! The first word is case-insensitive; `gjoin`/`gpart` are aliases of `join`/`leave` (the
//! seed bridge's names). Wrong or missing arguments get a usage line, unknown commands a
//! pointer to `help`, and Gitter errors a sentence a person understands.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, CommandThen, GitterCall, Lane, ResolvePurpose, Then};
use crate::ids::{GitterRoomId, OwnedUserId};
use crate::input::{EffectOutput, Failure, FailureKind, GitterRoom};
use crate::state::{Change, PortalState};

/// What `list`'s mark means, said the same way in `help` and in `list`.
macro_rules! legend {
    () => {
        "★ = you have joined its Matrix room"
    };
}

/// The help text (markdown, [`crate::notice`]).
pub(crate) const HELP: &str = concat!(
    "Commands:\n\n",
    "- `help`: this text\n",
    "- `login`: get a link to log in to Gitter\n",
    "- `logout`: forget your Gitter login and leave every bridged room\n",
    "- `list`: your Gitter rooms (",
    legend!(),
    ")\n",
    "- `join <room>`: join a Gitter room (e.g. `join gitterhq/sandbox`), alias `gjoin`\n",
    "- `leave <room>`: leave a Gitter room, alias `gpart`\n",
    "- `invite <room>`: invite you again to the Matrix room of a Gitter room you are in\n",
    "- `whoami`: which Gitter account you are logged in as",
);

/// A parsed bot command.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `help`.
    Help,
    /// `login`.
    Login,
    /// `logout`.
    Logout,
    /// `list`.
    List,
    /// `join <uri>` / `gjoin <uri>`.
    Join(String),
    /// `leave <uri>` / `gpart <uri>`.
    Leave(String),
    /// `invite <uri>`.
    Invite(String),
    /// `whoami`.
    Whoami,
}

/// Why a command line was not understood; the message is what the bot says.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ParseError {
    #[error("Unknown command `{0}`. Send `help` for the list of commands.")]
    Unknown(String),
    #[error("Usage: {0}")]
    Usage(&'static str),
}

impl Command {
    /// Parses a message body.
    pub(crate) fn parse(body: &str) -> Result<Command, ParseError> {
        let mut words = body.split_whitespace();
        let Some(verb) = words.next() else {
            return Err(ParseError::Usage("send `help` for the list of commands"));
        };
        let args: Vec<&str> = words.collect();
        let verb = verb.to_lowercase();
        let no_args = |cmd: Command, usage: &'static str| {
            if args.is_empty() {
                Ok(cmd)
            } else {
                Err(ParseError::Usage(usage))
            }
        };
        let one_room = |usage: &'static str| match args.as_slice() {
            [room] => normalize_room(room).ok_or(ParseError::Usage(usage)),
            _ => Err(ParseError::Usage(usage)),
        };
        match verb.as_str() {
            "help" => Ok(Command::Help),
            "login" => no_args(Command::Login, "`login`"),
            "logout" => no_args(Command::Logout, "`logout`"),
            "list" => no_args(Command::List, "`list`"),
            "whoami" => no_args(Command::Whoami, "`whoami`"),
            "join" | "gjoin" => {
                one_room("`join <room>`, for example `join gitterhq/sandbox`").map(Command::Join)
            }
            "leave" | "gpart" => {
                one_room("`leave <room>`, for example `leave gitterhq/sandbox`").map(Command::Leave)
            }
            "invite" => one_room("`invite <room>`, for example `invite gitterhq/sandbox`")
                .map(Command::Invite),
            _ => Err(ParseError::Unknown(verb)),
        }
    }
}

/// Accepts `org/room`, `/org/room` and `https://gitter.im/org/room`; refuses the rest.
fn normalize_room(arg: &str) -> Option<String> {
    let arg = arg
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_start_matches("gitter.im/")
        .trim_matches('/');
    let valid = !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '/' | '-' | '_' | '.'));
    valid.then(|| arg.to_owned())
}

/// The sentence for a Gitter failure about a room, for a person.
fn explain(failure: &Failure, uri: Option<&str>, doing: &str) -> String {
    let room = uri.unwrap_or("that room");
    match (failure.kind, doing) {
        (FailureKind::NotFound, "leave") => format!("You are not in {room} on Gitter."),
        (FailureKind::NotFound, _) => match uri {
            Some(uri) => format!("No Gitter room named {uri}."),
            None => "Gitter could not find that.".to_owned(),
        },
        (FailureKind::Forbidden, "join") => format!("Gitter refused to let you join {room}."),
        (FailureKind::Forbidden, _) => format!("Gitter does not allow you to {doing} {room}."),
        // Never said: `on_command_failed` leaves it to `invalidate_login`, which gives a link.
        (FailureKind::TokenRevoked, _) => "Your Gitter login is no longer valid.".to_owned(),
        (FailureKind::RateLimited, _) => {
            "Gitter is limiting how fast we can talk to it. Please try again in a minute."
                .to_owned()
        }
        (FailureKind::Transient, _) => {
            "Gitter is not answering right now. Please try again in a minute.".to_owned()
        }
        (FailureKind::Rejected, _) => format!("Gitter refused that request for {room}."),
    }
}

impl Bridge {
    pub(crate) fn on_command(&mut self, user: &OwnedUserId, body: &str) {
        let command = match Command::parse(body) {
            Ok(c) => c,
            Err(e) => {
                self.notice(user, e.to_string());
                return;
            }
        };
        let lane = Lane::User(user.clone());
        match command {
            Command::Help => self.notice(user, HELP),
            Command::Login => {
                let link = self.new_login_link(user);
                let prefix = match self.valid_login(user) {
                    Some(l) => format!(
                        "You are logged in as {}; this link logs you in again. ",
                        l.username
                    ),
                    None => String::new(),
                };
                self.notice(user, format!("{prefix}Log in to Gitter here: {link}"));
            }
            Command::Whoami => {
                // Every answer that needs a login carries a fresh link.
                let text = match self.state.users.get(user).and_then(|u| u.login.clone()) {
                    Some(l) if l.valid => format!("You are logged in to Gitter as {}.", l.username),
                    Some(l) => {
                        let again = self.log_in_here(user);
                        format!(
                            "Your Gitter login as {} is no longer valid. {again}",
                            l.username
                        )
                    }
                    None => {
                        let again = self.log_in_here(user);
                        format!("You are not logged in to Gitter. {again}")
                    }
                };
                self.notice(user, text);
            }
            Command::Logout => self.logout(user),
            Command::List | Command::Join(_) | Command::Leave(_) | Command::Invite(_) => {
                let Some(login) = self.valid_login(user) else {
                    let link = self.new_login_link(user);
                    self.notice(user, format!("You need to log in to Gitter first: {link}"));
                    return;
                };
                let token = login.token;
                let (uri, purpose) = match command {
                    Command::List => {
                        self.ask(
                            lane,
                            Action::Gitter {
                                token,
                                call: GitterCall::ListRooms,
                            },
                            Then::Command(CommandThen::Listed { user: user.clone() }),
                        );
                        return;
                    }
                    Command::Join(uri) => (uri, ResolvePurpose::Join),
                    Command::Leave(uri) => (uri, ResolvePurpose::Leave),
                    Command::Invite(uri) => (uri, ResolvePurpose::Invite),
                    _ => return,
                };
                self.ask(
                    lane,
                    Action::Gitter {
                        token,
                        call: GitterCall::ResolveRoom { uri: uri.clone() },
                    },
                    Then::Command(CommandThen::Resolved {
                        user: user.clone(),
                        uri,
                        purpose,
                    }),
                );
            }
        }
    }

    fn logout(&mut self, user: &OwnedUserId) {
        if !self.forget_login(user, "You logged out of Gitter.") {
            self.notice(user, "You are not logged in to Gitter.");
            return;
        }
        self.notice(
            user,
            "You are logged out: your Gitter token is forgotten and you left every bridged room.",
        );
    }

    /// Forgets a user's Gitter login and closes their portals (kicking them with `reason`).
    /// Returns whether there was a login.
    pub(crate) fn forget_login(&mut self, user: &OwnedUserId, reason: &str) -> bool {
        let mut record = self.user_record(user);
        if record.login.take().is_none() {
            return false;
        }
        self.change(Change::PutUser(record));
        self.unwatch_user(user);
        let rooms: Vec<GitterRoomId> = self
            .state
            .portals
            .keys()
            .filter(|(owner, _)| owner == user)
            .map(|(_, room)| room.clone())
            .collect();
        for room in rooms {
            self.close_portal(user, &room, reason);
        }
        true
    }

    pub(crate) fn on_command_answer(&mut self, then: CommandThen, answer: Answer) {
        let Answer {
            id,
            name,
            action,
            result,
            ..
        } = answer;
        let output = match result {
            Ok(output) => output,
            Err(failure) => {
                let (user, uri, doing) = match &then {
                    CommandThen::Listed { user } => (user, None, "list"),
                    CommandThen::Resolved { user, uri, .. } => (user, Some(uri.clone()), "find"),
                    CommandThen::Joined { user } => {
                        let room = match &action {
                            Action::Gitter {
                                call: GitterCall::JoinRoom { room, .. },
                                ..
                            } => self.room_label(room),
                            _ => String::new(),
                        };
                        (user, Some(room), "join")
                    }
                    CommandThen::Left { user, uri, .. } => (user, Some(uri.clone()), "leave"),
                };
                let user = user.clone();
                self.on_command_failed(&user, uri.as_deref(), &failure, doing);
                return;
            }
        };
        match (then, output) {
            (CommandThen::Listed { user }, EffectOutput::GitterRooms(rooms)) => {
                self.on_rooms_listed(&user, false, rooms)
            }
            (CommandThen::Resolved { user, uri, purpose }, EffectOutput::GitterRoom(room)) => {
                self.on_room_resolved(&user, &uri, purpose, room)
            }
            (CommandThen::Joined { user }, EffectOutput::GitterRoom(room)) => {
                self.on_gitter_room_joined(&user, room)
            }
            (CommandThen::Left { user, room, uri }, _) => {
                self.on_gitter_room_left(&user, &room, &uri)
            }
            (_, got) => self.unexpected(id, name, &got),
        }
    }

    /// A user's rooms are listed: for the `list` command, or to open their portals after
    /// a login (`open_portals`).
    pub(crate) fn on_rooms_listed(
        &mut self,
        user: &OwnedUserId,
        open_portals: bool,
        rooms: Vec<GitterRoom>,
    ) {
        // Rooms listed only because of an unread mention have `roomMember: false`
        // (docs/gitter-api.md §3.2): the user is not in them.
        let mut rooms: Vec<GitterRoom> = rooms
            .into_iter()
            .filter(|r| r.room_member != Some(false))
            .collect();
        match open_portals {
            true => {
                for room in rooms {
                    self.open_portal(user, &room, false);
                }
            }
            false => {
                if rooms.is_empty() {
                    self.notice(
                        user,
                        "You are not in any Gitter room. Send `join <room>` to join one.",
                    );
                    return;
                }
                rooms.sort_by_key(|r| {
                    r.uri
                        .clone()
                        .unwrap_or_else(|| r.name.clone())
                        .to_lowercase()
                });
                let mut text = String::from(concat!("Your Gitter rooms (", legend!(), "):\n"));
                for r in rooms {
                    // Joined, not merely invited: what the legend promises.
                    let joined = self
                        .state
                        .portals
                        .get(&(user.clone(), r.id.clone()))
                        .is_some_and(|p| p.state == PortalState::Active);
                    // Room names come from Gitter: quoted as code, never read as markdown.
                    let label = match &r.uri {
                        Some(uri) => crate::notice::code(uri),
                        None => format!("{} (one-to-one)", crate::notice::code(&r.name)),
                    };
                    text.push_str(&format!("\n- {}{label}", if joined { "★ " } else { "" }));
                }
                self.notice(user, text);
            }
        }
    }

    fn on_room_resolved(
        &mut self,
        user: &OwnedUserId,
        uri: &str,
        purpose: ResolvePurpose,
        room: GitterRoom,
    ) {
        let Some(login) = self.valid_login(user) else {
            let again = self.log_in_here(user);
            self.notice(
                user,
                format!("You are no longer logged in to Gitter. {again}"),
            );
            return;
        };
        let lane = Lane::User(user.clone());
        match purpose {
            ResolvePurpose::Join => {
                self.remember_room(&room);
                self.ask(
                    lane,
                    Action::Gitter {
                        token: login.token,
                        call: GitterCall::JoinRoom {
                            gitter_user: login.gitter_id,
                            room: room.id,
                        },
                    },
                    Then::Command(CommandThen::Joined { user: user.clone() }),
                );
            }
            ResolvePurpose::Leave => {
                self.ask(
                    lane,
                    Action::Gitter {
                        token: login.token,
                        call: GitterCall::LeaveRoom {
                            gitter_user: login.gitter_id,
                            room: room.id.clone(),
                        },
                    },
                    Then::Command(CommandThen::Left {
                        user: user.clone(),
                        room: room.id,
                        uri: room.uri.unwrap_or_else(|| uri.to_owned()),
                    }),
                );
            }
            ResolvePurpose::Invite => {
                if room.room_member == Some(false) {
                    let label = room.uri.clone().unwrap_or_else(|| uri.to_owned());
                    self.notice(
                        user,
                        format!(
                            "You are not in {label} on Gitter. Send `join {label}` to join it."
                        ),
                    );
                    return;
                }
                self.open_portal(user, &room, true);
            }
        }
    }

    fn on_gitter_room_joined(&mut self, user: &OwnedUserId, room: GitterRoom) {
        let label = room.uri.clone().unwrap_or_else(|| room.name.clone());
        self.notice(user, format!("Joined {label} on Gitter."));
        self.open_portal(user, &room, true);
    }

    fn on_gitter_room_left(&mut self, user: &OwnedUserId, room: &GitterRoomId, uri: &str) {
        self.close_portal(user, room, "You left this room on Gitter.");
        self.notice(user, format!("Left {uri} on Gitter."));
    }

    pub(crate) fn on_command_failed(
        &mut self,
        user: &OwnedUserId,
        uri: Option<&str>,
        failure: &Failure,
        doing: &str,
    ) {
        if failure.kind == FailureKind::TokenRevoked {
            // invalidate_login already told the user.
            return;
        }
        if doing == "open" {
            self.notice(
                user,
                format!(
                    "Could not list your Gitter rooms: {}",
                    explain(failure, None, "list")
                ),
            );
            return;
        }
        self.notice(user, explain(failure, uri, doing));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive_and_aliases_work() {
        assert_eq!(Command::parse("HELP"), Ok(Command::Help));
        assert_eq!(
            Command::parse("GJoin gitterhq/sandbox"),
            Ok(Command::Join("gitterhq/sandbox".into()))
        );
        assert_eq!(
            Command::parse("gpart https://gitter.im/gitterhq/sandbox"),
            Ok(Command::Leave("gitterhq/sandbox".into()))
        );
    }

    #[test]
    fn wrong_arguments_get_a_usage_line() {
        assert!(
            matches!(Command::parse("join"), Err(ParseError::Usage(u)) if u.starts_with("`join <room>`"))
        );
        assert!(matches!(
            Command::parse("join a b"),
            Err(ParseError::Usage(_))
        ));
        assert!(matches!(
            Command::parse("list extra"),
            Err(ParseError::Usage("`list`"))
        ));
        assert!(matches!(
            Command::parse("invite <script>"),
            Err(ParseError::Usage(_))
        ));
    }

    #[test]
    fn unknown_command_points_to_help() {
        let e = Command::parse("dance now").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Unknown command `dance`. Send `help` for the list of commands."
        );
    }
}
