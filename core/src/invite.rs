//! Invites to the bot and the control room.
//!
//! Refused room -> decline. User not permitted -> notice, leave. Otherwise the bot joins and
//! counts the members: anyone besides the bot and the inviter -> "I only work in private
//! chats", leave, remember the room as refused. Else the room becomes the user's control room
//! (leaving the previous one) and the bot greets. Leaving the control room clears it.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, InviteThen, Lane, MatrixCall, Then};
use crate::ids::{GitterRoomId, OwnedRoomId, OwnedUserId};
use crate::input::EffectOutput;
use crate::input::{MatrixEvent, Membership};
use crate::portal::RoomRole;
use crate::state::{Change, PortalState, UserRecord};

pub(crate) const NOT_PERMITTED: &str =
    "Sorry, you are not allowed to use this bridge. Ask the bridge's operator to add you.";
pub(crate) const ONLY_PRIVATE: &str =
    "I only work in private chats: invite me to a room with just the two of us.";
/// What the bot says in an encrypted chat with it, before it leaves (an unencrypted notice
/// still shows in every client, marked as not encrypted).
pub(crate) const ENCRYPTED_CONTROL: &str = "This chat is encrypted, and I cannot read encrypted \
     messages, so I am leaving it. Start a new direct chat with me without encryption (in \
     Element: turn off \"Enable end-to-end encryption\" when you create it) to go on.";
/// The reason the bot's leave carries from an encrypted chat.
const ENCRYPTED_REASON: &str = "The bridge bot cannot read encrypted chats";
/// What the bot says in a portal when an encrypted message or encryption shows up there.
pub(crate) const ENCRYPTED_PORTAL: &str = "Encrypted messages cannot be bridged to Gitter: the \
     bridge cannot read them. This message did not reach Gitter.";
pub(crate) const ENCRYPTION_ENABLED_PORTAL: &str = "Encryption was turned on in this room. The \
     bridge cannot read encrypted messages, so what you write here no longer reaches Gitter \
     (messages from Gitter still arrive here).";

impl Bridge {
    pub(crate) fn on_member(&mut self, event: &MatrixEvent, target: OwnedUserId, m: Membership) {
        let room = event.room_id.clone();
        if target == self.config.bot {
            match m {
                Membership::Invite => self.on_bot_invited(room, event.sender.clone(), false),
                Membership::Leave | Membership::Ban => self.on_bot_removed(&room),
                _ => {}
            }
            return;
        }
        if matches!(m, Membership::Join | Membership::Invite | Membership::Knock)
            && let Some(RoomRole::Control(user)) = self.portals.role(&room).cloned()
            && target != user
        {
            // The control room carries login links and the bot's answers: it must stay a
            // chat of two. A third person (joined, invited or knocking) ends it: the bot says
            // why, leaves, and refuses the room from now on.
            let lane = Lane::User(user.clone());
            self.notice_in(
                lane,
                room.clone(),
                format!(
                    "{target} is in this room now, so it is no longer a private chat with me: I \
                     am leaving it, and I will not come back to it. Start a new direct chat with \
                     me, just the two of us, to go on."
                ),
            );
            self.clear_control_room(&user, true);
            self.change(Change::RefuseRoom(room));
            return;
        }
        if m == Membership::Join {
            match self.portals.role(&room).cloned() {
                Some(RoomRole::Portal(owner, groom)) if owner == target => {
                    self.on_owner_joined_portal(&owner, &groom);
                    return;
                }
                None => self.portals.note_early_join(room.clone(), target.clone()),
                Some(_) => {}
            }
        }
        if matches!(m, Membership::Leave | Membership::Ban) && self.portals.role(&room).is_none() {
            // Joined and gone again before the room was known: not joined after all.
            self.portals.take_early_join(&room, &target);
        }
        if !matches!(m, Membership::Leave | Membership::Ban) {
            return;
        }
        match self.portals.role(&room).cloned() {
            Some(RoomRole::Control(user)) if user == target => {
                self.clear_control_room(&user, true);
            }
            Some(RoomRole::Portal(owner, groom)) if owner == target => {
                self.on_owner_left_portal(&owner, &groom);
            }
            _ => {}
        }
    }

    pub(crate) fn on_bot_invited(
        &mut self,
        room: OwnedRoomId,
        inviter: OwnedUserId,
        encrypted: bool,
    ) {
        let lane = Lane::User(inviter.clone());
        if self.state.refused_rooms.contains(&room) {
            // Declining an invite is leaving the room.
            self.emit(
                lane,
                Action::Matrix(MatrixCall::Leave {
                    room,
                    user: self.config.bot.clone(),
                }),
            );
            return;
        }
        let permitted = self.config.permissions.allows(&inviter);
        // The bot joins in every case: it has to be in the room to say why it leaves.
        let then = if encrypted && permitted {
            InviteThen::EncryptedJoined {
                room: room.clone(),
                inviter,
            }
        } else {
            InviteThen::BotJoined {
                room: room.clone(),
                inviter,
                permitted,
            }
        };
        self.ask(
            lane,
            Action::Matrix(MatrixCall::Join {
                room,
                user: self.config.bot.clone(),
            }),
            Then::Invite(then),
        );
    }

    pub(crate) fn on_invite_answer(&mut self, then: InviteThen, answer: Answer) {
        // A bot that could not join or count needs nothing beyond the warning: the
        // inviter can invite it again.
        let Ok(output) = answer.result else {
            return;
        };
        match (then, output) {
            (
                InviteThen::BotJoined {
                    room,
                    inviter,
                    permitted,
                },
                _,
            ) => self.on_bot_joined(room, inviter, permitted),
            (InviteThen::CheckPrivate { room, inviter }, EffectOutput::MatrixMembers(members)) => {
                self.on_room_members(room, inviter, members)
            }
            (InviteThen::CheckPrivate { .. }, got) => self.unexpected(answer.id, answer.name, &got),
            (InviteThen::EncryptedJoined { room, inviter }, _) => self.leave_for_good(
                Lane::User(inviter),
                room,
                ENCRYPTED_CONTROL,
                Some(ENCRYPTED_REASON),
            ),
        }
    }

    fn on_bot_joined(&mut self, room: OwnedRoomId, inviter: OwnedUserId, permitted: bool) {
        let lane = Lane::User(inviter.clone());
        if !permitted {
            self.notice_in(lane.clone(), room.clone(), NOT_PERMITTED);
            self.emit(
                lane,
                Action::Matrix(MatrixCall::Leave {
                    room,
                    user: self.config.bot.clone(),
                }),
            );
            return;
        }
        self.ask(
            lane,
            Action::Matrix(MatrixCall::RoomMembers { room: room.clone() }),
            Then::Invite(InviteThen::CheckPrivate { room, inviter }),
        );
    }

    fn on_room_members(
        &mut self,
        room: OwnedRoomId,
        inviter: OwnedUserId,
        members: Vec<OwnedUserId>,
    ) {
        let lane = Lane::User(inviter.clone());
        let others = members
            .iter()
            .any(|m| m != &self.config.bot && m != &inviter);
        if others {
            self.leave_for_good(lane, room, ONLY_PRIVATE, None);
            return;
        }
        let mut user = self.user_record(&inviter);
        if let Some(previous) = user.control_room.clone()
            && previous != room
        {
            self.emit(
                lane.clone(),
                Action::Matrix(MatrixCall::Leave {
                    room: previous,
                    user: self.config.bot.clone(),
                }),
            );
        }
        user.control_room = Some(room);
        self.change(Change::PutUser(user));
        self.greet(&inviter);
    }

    /// The user's record, or a fresh one.
    pub(crate) fn user_record(&self, user: &OwnedUserId) -> UserRecord {
        self.state.users.get(user).cloned().unwrap_or(UserRecord {
            user: user.clone(),
            control_room: None,
            login: None,
        })
    }

    fn greet(&mut self, user: &OwnedUserId) {
        let logged_in = self
            .state
            .users
            .get(user)
            .and_then(|u| u.login.as_ref())
            .filter(|l| l.valid)
            .map(|l| l.username.clone());
        match logged_in {
            Some(name) => {
                let text = format!(
                    "Hello again! You are logged in to Gitter as {name}.\n\n{}",
                    crate::commands::HELP
                );
                self.notice(user, text);
            }
            None => {
                let link = self.new_login_link(user);
                self.notice(
                    user,
                    format!(
                        "Hello! I bridge your Gitter rooms to Matrix. Log in to Gitter here: {link}\n\
                         (the link works once, for {} minutes). Send `help` for the commands.",
                        self.config.login_link_lifetime_ms / 60_000
                    ),
                );
            }
        }
    }

    /// An encrypted message, or encryption turned on, in a room of the bridge. In the control
    /// room the bot cannot read commands any more: it says so in a notice it can still send
    /// (unencrypted), leaves with the reason, and refuses the room from now on (encryption
    /// cannot be turned off). In a portal the owner is told that it is not bridged.
    pub(crate) fn on_encrypted(&mut self, event: &MatrixEvent) {
        let room = event.room_id.clone();
        let enabled = matches!(event.kind, crate::MatrixEventKind::EncryptionEnabled);
        match self.portals.role(&room).cloned() {
            Some(RoomRole::Control(user)) => {
                let mut record = self.user_record(&user);
                record.control_room = None;
                self.change(Change::PutUser(record));
                self.leave_for_good(
                    Lane::User(user),
                    room,
                    ENCRYPTED_CONTROL,
                    Some(ENCRYPTED_REASON),
                );
            }
            Some(RoomRole::Portal(owner, groom)) if owner == event.sender || enabled => {
                let text = if enabled {
                    ENCRYPTION_ENABLED_PORTAL
                } else {
                    ENCRYPTED_PORTAL
                };
                self.notice_in(Lane::Portal { owner, room: groom }, room, text);
            }
            _ => {}
        }
    }

    /// A room the bot must not stay in (not private, or encrypted, which cannot be turned
    /// off again): it says why in a notice (sent unencrypted, which every client still
    /// shows), leaves, with `reason` for clients that show the notice badly, and refuses the
    /// room from now on.
    fn leave_for_good(&mut self, lane: Lane, room: OwnedRoomId, why: &str, reason: Option<&str>) {
        self.notice_in(lane.clone(), room.clone(), why);
        let user = self.config.bot.clone();
        let call = match reason {
            Some(reason) => MatrixCall::LeaveWithReason {
                room: room.clone(),
                user,
                reason: reason.to_owned(),
            },
            None => MatrixCall::Leave {
                room: room.clone(),
                user,
            },
        };
        self.emit(lane, Action::Matrix(call));
        self.change(Change::RefuseRoom(room));
    }

    fn clear_control_room(&mut self, user: &OwnedUserId, leave: bool) {
        let mut record = self.user_record(user);
        if let Some(room) = record.control_room.take() {
            self.change(Change::PutUser(record));
            if leave {
                self.emit(
                    Lane::User(user.clone()),
                    Action::Matrix(MatrixCall::Leave {
                        room,
                        user: self.config.bot.clone(),
                    }),
                );
            }
        }
    }

    fn on_bot_removed(&mut self, room: &OwnedRoomId) {
        if let Some(RoomRole::Control(user)) = self.portals.role(room).cloned() {
            self.clear_control_room(&user, false);
        }
    }

    /// The owner took the invitation: `list` stars the portal from now on.
    fn on_owner_joined_portal(&mut self, owner: &OwnedUserId, room: &GitterRoomId) {
        let key = (owner.clone(), room.clone());
        if let Some(mut portal) = self.state.portals.get(&key).cloned()
            && portal.state == PortalState::Invited
        {
            portal.state = PortalState::Active;
            self.change(Change::PutPortal(portal));
        }
    }

    fn on_owner_left_portal(&mut self, owner: &OwnedUserId, room: &GitterRoomId) {
        let key = (owner.clone(), room.clone());
        if let Some(mut portal) = self.state.portals.get(&key).cloned()
            && portal.state != PortalState::Closed
        {
            // The Gitter membership stays: `invite <room>` brings the portal back.
            portal.state = PortalState::Closed;
            self.change(Change::PutPortal(portal));
            self.drop_queued(owner, room);
            self.ensure_reader(room);
        }
    }
}
