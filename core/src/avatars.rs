//! Pictures: ghosts wear their Gitter user's avatar, portals their Gitter room's.
//!
//! A picture is a URL on the web. It is downloaded and uploaded to the homeserver once
//! ([`MatrixCall::MirrorMedia`]; the store keeps the `mxc://` URI by URL,
//! [`crate::Snapshot::avatars`]), then set wherever it is shown: many ghosts share a default
//! avatar, and a one-to-one room's picture is its other user's. Which URL each ghost and
//! portal was given is stored too, so nothing is asked again after a restart, and a new
//! picture on Gitter is noticed the next time the user speaks or the room is listed.
//!
//! Each ghost and each portal has its picture lane ([`Lane::Ghost`], [`Lane::RoomAvatar`]):
//! a slow or failing picture server never holds a message. A picture that cannot be
//! downloaded is not asked for again until its URL changes (the warning says why); a
//! homeserver outage during the upload is retried like every Matrix call.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, GhostThen, Lane, MatrixCall, PortalThen, RoomState, Then};
use crate::ids::{GitterRoomId, OwnedRoomId};
use crate::input::{EffectOutput, GitterRoom, GitterUser};
use crate::state::{Change, GhostRecord};

impl Bridge {
    /// Whether the ghost of `user` has (or is getting) the avatar Gitter gives it. Asked for
    /// every message in every portal: one map lookup, nothing cloned.
    pub(crate) fn avatar_is_current(&self, user: &GitterUser) -> bool {
        user.avatar_url
            .as_ref()
            .is_none_or(|url| self.state.ghost_avatars.get(&user.id) == Some(url))
    }

    /// Gives the ghost its Gitter avatar when it has not got that one yet.
    pub(crate) fn ensure_avatar(&mut self, user: &GitterUser, ghost: &GhostRecord) {
        if self.avatar_is_current(user) {
            return;
        }
        let Some(url) = user.avatar_url.clone() else {
            return;
        };
        self.change(Change::SetGhostAvatar(user.id.clone(), url.clone()));
        let lane = Lane::Ghost(ghost.mxid.clone());
        if !ghost.registered {
            // The profile needs the user; registering twice is harmless (M_USER_IN_USE).
            self.emit(
                lane.clone(),
                Action::Matrix(MatrixCall::RegisterGhost {
                    user: ghost.mxid.clone(),
                }),
            );
        }
        let user = ghost.mxid.clone();
        let then = Then::Ghost(GhostThen::Avatar {
            user: user.clone(),
            url: url.clone(),
        });
        self.picture(lane, url, then, |mxc| {
            Action::Matrix(MatrixCall::SetAvatar { user, mxc })
        });
    }

    /// What a listing says of a Gitter room's picture: its open portals get it.
    pub(crate) fn note_room_avatar(&mut self, room: &GitterRoom) {
        let Some(url) = room.avatar_url.clone() else {
            return;
        };
        self.portals.set_room_avatar(&room.id, url.clone());
        for owner in self.portals.owners(&room.id) {
            let portal = self.state.portals.get(&(owner, room.id.clone()));
            if let Some(room_id) = portal
                .filter(|p| p.state.is_open())
                .and_then(|p| p.room_id.clone())
            {
                self.ensure_room_avatar(room_id, url.clone());
            }
        }
    }

    /// A portal's room exists now: it gets its Gitter room's picture, when one was listed.
    pub(crate) fn room_avatar_on_creation(&mut self, room: &GitterRoomId, room_id: OwnedRoomId) {
        if let Some(url) = self.portals.room_avatar(room).map(str::to_owned) {
            self.ensure_room_avatar(room_id, url);
        }
    }

    fn ensure_room_avatar(&mut self, room_id: OwnedRoomId, url: String) {
        if self.state.portal_avatars.get(&room_id) == Some(&url) {
            return;
        }
        self.change(Change::SetPortalAvatar(room_id.clone(), url.clone()));
        let then = Then::Portal(PortalThen::Avatar {
            room: room_id.clone(),
            url: url.clone(),
        });
        let lane = Lane::RoomAvatar(room_id.clone());
        let bot = self.config.bot.clone();
        self.picture(lane, url, then, |mxc| set_room_avatar(room_id, bot, mxc));
    }

    /// The upload of a portal's picture is done.
    pub(crate) fn on_room_avatar_uploaded(
        &mut self,
        room: OwnedRoomId,
        url: String,
        answer: Answer,
    ) {
        let bot = self.config.bot.clone();
        self.on_picture_uploaded(url, answer, |mxc| set_room_avatar(room, bot, mxc));
    }

    /// Puts the picture at `url` in place with `set`: at once when it was uploaded before,
    /// else once its upload (whose answer goes to `then`) is done.
    fn picture(&mut self, lane: Lane, url: String, then: Then, set: impl FnOnce(String) -> Action) {
        match self.state.avatars.get(&url).cloned() {
            Some(mxc) => {
                self.emit(lane, set(mxc));
            }
            None => {
                self.ask(
                    lane,
                    Action::Matrix(MatrixCall::MirrorMedia {
                        url,
                        name: "avatar".to_owned(),
                    }),
                    then,
                );
            }
        }
    }

    /// A picture is uploaded: it is remembered, and set as the same effect (in its lane).
    pub(crate) fn on_picture_uploaded(
        &mut self,
        url: String,
        answer: Answer,
        set: impl FnOnce(String) -> Action,
    ) {
        match answer.result {
            Ok(EffectOutput::Uploaded(uploaded)) => {
                self.change(Change::PutAvatar {
                    url,
                    mxc: uploaded.mxc.clone(),
                });
                self.continue_as(answer.id, answer.lane, set(uploaded.mxc), Then::Nothing);
            }
            Ok(got) => self.unexpected(answer.id, answer.name, &got),
            // The warning says why; the old picture stays until the URL changes again.
            Err(_) => {}
        }
    }
}

fn set_room_avatar(room: OwnedRoomId, bot: crate::OwnedUserId, mxc: String) -> Action {
    Action::Matrix(MatrixCall::SetRoomState {
        room,
        sender: bot,
        state: RoomState::Avatar(mxc),
    })
}
