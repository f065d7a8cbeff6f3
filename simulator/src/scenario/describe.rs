//! How each step reads in a transcript: one line a person understands.

use super::*;

impl Action {
    /// One line for the transcript.
    pub fn describe(&self) -> String {
        match self {
            Action::Register { user } => format!("{user} registers on the homeserver"),
            Action::OpenDm { user, name } => match name {
                Some(n) => format!("{user} opens a DM \"{n}\" with the bot"),
                None => format!("{user} opens a DM with the bot"),
            },
            Action::CreateGroup {
                user,
                name,
                members,
            } => format!(
                "{user} creates \"{name}\" with {} and invites the bot",
                members.join(", ")
            ),
            Action::InviteBot { user, room } => format!("{user} invites the bot to {room}"),
            Action::Say {
                user,
                text,
                room,
                repeat,
            } => format!("{user} says {} {}", repeated(text, *repeat), place(room)),
            Action::Edit {
                user,
                of,
                text,
                room,
            } => format!(
                "{user} edits {} to {} {}",
                short(of),
                short(text),
                place(room)
            ),
            Action::Redact { user, of, room } => {
                format!("{user} redacts {} {}", short(of), place(room))
            }
            Action::Emote { user, text, room } => {
                format!("{user} emotes {} {}", short(text), place(room))
            }
            Action::Leave { user, room } => format!("{user} leaves {room}"),
            Action::Login {
                user,
                gitter_user,
                open_portals,
            } => {
                let g = gitter_user.as_deref().unwrap_or(user);
                if *open_portals {
                    format!("{user} logs in to Gitter as {g} and joins their portals")
                } else {
                    format!("{user} logs in to Gitter as {g}")
                }
            }
            Action::OpenLoginLink {
                user,
                gitter_user,
                until_status,
                ..
            } => match until_status {
                Some(status) => {
                    format!("{user} opens their newest login link until it is HTTP {status}")
                }
                None => format!(
                    "{user} opens their newest login link (signing in as {})",
                    gitter_user.as_deref().unwrap_or(user)
                ),
            },
            Action::AcceptInvites { user } => format!("{user} accepts their invites"),
            Action::GitterPost {
                from,
                room,
                text,
                status,
            } => {
                let kind = if *status { " a /me status" } else { "" };
                format!("{from} posts{kind} on Gitter in {room}: {}", short(text))
            }
            Action::GitterJoin { user, room } => format!("{user} joins {room} on Gitter"),
            Action::GitterEdit {
                from,
                room,
                text,
                new_text,
            } => format!("{from} edits {text:?} in {room} on Gitter to {new_text:?}"),
            Action::GitterDelete { from, room, text } => {
                format!("{from} deletes {text:?} in {room} on Gitter")
            }
            Action::GitterTopic { room, topic } => {
                format!("the topic of {room} on Gitter becomes {topic:?}")
            }
            Action::FayeFault {
                forget_clients,
                skip_sequence,
            } => match (forget_clients, skip_sequence) {
                (true, true) => "Gitter's realtime server restarts and loses a delivery".into(),
                (true, false) => "Gitter's realtime server restarts (forgets every client)".into(),
                (false, true) => "Gitter's realtime server loses a delivery".into(),
                (false, false) => "nothing happens to Gitter's realtime server".into(),
            },
            Action::GitterLeave { user, room } => format!("{user} leaves {room} on Gitter"),
            Action::GitterStreamLine { room, line } => {
                format!(
                    "Gitter writes a raw line to the streams of {room}: {}",
                    short(line)
                )
            }
            Action::DropStreams { room } => match room {
                Some(r) => format!("Gitter drops the streams of {r}"),
                None => "Gitter drops every stream".to_owned(),
            },
            Action::GitterFail {
                status,
                next,
                for_ms,
            } => match (next, for_ms) {
                (Some(n), _) => format!("Gitter answers {status} to the next {n} requests"),
                (None, Some(ms)) => format!("Gitter answers {status} to everything for {ms} ms"),
                (None, None) => format!("Gitter fails with {status} (no `next` or `for_ms`)"),
            },
            Action::GitterDelay { ms } => format!("Gitter delays every response by {ms} ms"),
            Action::RevokeToken { gitter_user } => {
                format!("Gitter revokes the token of {gitter_user}")
            }
            Action::HsReplayTransaction {
                containing,
                new_txn_id,
            } => {
                let which = match containing {
                    Some(c) => format!("the transaction with {}", short(c)),
                    None => "the last transaction".to_owned(),
                };
                if *new_txn_id {
                    format!("the homeserver sends the events of {which} again, under a new id")
                } else {
                    format!("the homeserver sends {which} again")
                }
            }
            Action::HsFailPushes { next } => {
                format!("the homeserver's next {next} AS pushes fail")
            }
            Action::HsFailCs {
                status,
                next,
                for_ms,
            } => match (next, for_ms) {
                (Some(n), _) => format!("the homeserver answers {status} to the next {n} requests"),
                (None, Some(ms)) => {
                    format!("the homeserver answers {status} to everything for {ms} ms")
                }
                (None, None) => format!("the homeserver fails with {status}"),
            },
            Action::HsDelay { ms } => format!("the homeserver delays every response by {ms} ms"),
            Action::ClearFaults => "both fakes stop injecting faults".to_owned(),
            Action::KillBridge => "the bridge is killed (crash)".to_owned(),
            Action::StopBridge => "the bridge stops gracefully".to_owned(),
            Action::StartBridge => "the bridge starts".to_owned(),
            Action::RestartBridge => "the bridge is killed and started again".to_owned(),
            Action::AsPut {
                body, txn, auth, ..
            } => {
                let auth = match auth {
                    Auth::HsToken => "with the hs_token",
                    Auth::Wrong => "with a wrong token",
                    Auth::None => "without a token",
                };
                let txn = txn.as_deref().unwrap_or("<fresh>");
                format!(
                    "raw PUT of transaction {txn} to the AS API {auth}: {}",
                    short(body)
                )
            }
        }
    }
}

impl Expectation {
    /// One line for the transcript.
    pub fn describe(&self) -> String {
        let text = match self {
            Expectation::Notice {
                user,
                contains,
                room,
                anywhere,
            } => format!(
                "{user} gets a bot notice {} containing {}{}",
                place(room),
                short(contains),
                if *anywhere {
                    ""
                } else {
                    " (after their last message)"
                }
            ),
            Expectation::Message {
                user,
                room,
                from,
                body,
                msgtype,
                formatted_contains,
                formatted_lacks,
            } => {
                let mut s = format!(
                    "{user} sees {} a message from {from}: {}",
                    place(room),
                    short(body)
                );
                if let Some(t) = msgtype {
                    let _ = write!(s, " ({t})");
                }
                if let Some(f) = formatted_contains {
                    let _ = write!(s, ", formatted with {}", short(f));
                }
                if let Some(f) = formatted_lacks {
                    let _ = write!(s, ", formatted without {}", short(f));
                }
                s
            }
            Expectation::MessageCount {
                user,
                room,
                from,
                body,
                contains,
                count,
            } => {
                let what = match (body, contains) {
                    (Some(b), _) => short(b),
                    (None, Some(c)) => format!("containing {}", short(c)),
                    (None, None) => "of any body".to_owned(),
                };
                let from = from.as_deref().unwrap_or("others");
                format!(
                    "{user} sees {} exactly {count} message(s) from {from} {what}",
                    place(room)
                )
            }
            Expectation::Sequence {
                user,
                room,
                from,
                bodies,
            } => format!(
                "{user} sees in {room} from {}, in order and once each: {}",
                from.as_deref().unwrap_or("others"),
                bodies
                    .iter()
                    .map(|b| short(b))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Expectation::NoEcho { user, room } => {
                format!("no message of {user} comes back to them in {room} as their ghost")
            }
            Expectation::GhostName {
                user,
                room,
                ghost,
                name,
            } => format!("{user} sees {ghost}'s ghost in {room} named \"{name}\""),
            Expectation::Invited { user, room } => format!("{user} is invited to {room}"),
            Expectation::Redacted {
                user,
                room,
                from,
                body,
            } => format!("{user} no longer sees {from}'s {body:?} in {room} (redacted)"),
            Expectation::Topic { user, room, topic } => {
                format!("{user} sees the topic of {room} as {topic:?}")
            }
            Expectation::Membership {
                user,
                room,
                who,
                is,
            } => format!(
                "{} is `{is}` in {user}'s room {room}",
                who.as_deref().unwrap_or(user)
            ),
            Expectation::GitterMessage {
                room,
                from,
                text,
                repeat,
                status,
            } => format!(
                "Gitter room {room} has a {}message from {from}: {}",
                if *status == Some(true) { "status " } else { "" },
                repeated(text, *repeat)
            ),
            Expectation::GitterCount {
                room,
                from,
                text,
                repeat,
                count,
            } => format!(
                "Gitter room {room} has exactly {count} message(s) from {from}: {}",
                repeated(text, *repeat)
            ),
            Expectation::GitterMember { room, user, member } => {
                if *member {
                    format!("{user} is a member of {room} on Gitter")
                } else {
                    format!("{user} is not a member of {room} on Gitter")
                }
            }
            Expectation::BridgeListening { room, reader, .. } => match reader {
                Some(r) => format!("the bridge reads {room} with {r}'s token"),
                None => format!("the bridge has a stream open for {room}"),
            },
            Expectation::LoginPage {
                user,
                contains,
                status,
            } => match status {
                Some(s) => format!("{user}'s browser shows HTTP {s} with {}", short(contains)),
                None => format!("{user}'s browser shows {}", short(contains)),
            },
            Expectation::BridgeUp => "the bridge is up".to_owned(),
            Expectation::HsRetried { at_least } => format!(
                "the homeserver retried {at_least}+ failed pushes until the bridge took them"
            ),
            Expectation::GitterAbsent { room, from, text } => {
                format!(
                    "Gitter room {room} has no message from {from}: {}",
                    short(text)
                )
            }
            Expectation::GitterFaultsSpent => "Gitter served every injected failure".to_owned(),
            Expectation::HsDelayed { at_least } => {
                format!("{at_least}+ requests wait out the homeserver's delay")
            }
            Expectation::HsDelivered { body } => {
                format!(
                    "the bridge acknowledged the transaction with {}",
                    short(body)
                )
            }
        };
        format!("expect: {text}")
    }

    pub(super) fn default_settle(&self) -> Duration {
        match self {
            Expectation::MessageCount { .. }
            | Expectation::Sequence { .. }
            | Expectation::NoEcho { .. }
            | Expectation::GitterCount { .. } => DEFAULT_SETTLE,
            _ => Duration::ZERO,
        }
    }
}

/// A text given as `text` × `repeat`, for a transcript line.
pub(super) fn repeated(text: &str, repeat: Option<usize>) -> String {
    match repeat {
        Some(n) => format!(
            "{} x {n} ({} characters)",
            short(text),
            text.chars().count() * n
        ),
        None => short(text),
    }
}

pub(super) fn place(room: &Option<String>) -> String {
    match room.as_deref() {
        None | Some("dm") => "in their DM".to_owned(),
        Some(r) => format!("in {r}"),
    }
}

/// A text for a transcript line: quoted, cut at 60 characters.
pub(super) fn short(text: &str) -> String {
    let one_line: String = text
        .chars()
        .map(|c| if c == '\n' { ' ' } else { c })
        .collect();
    if one_line.chars().count() > 60 {
        let cut: String = one_line.chars().take(57).collect();
        format!("{:?}", format!("{cut}..."))
    } else {
        format!("{one_line:?}")
    }
}
