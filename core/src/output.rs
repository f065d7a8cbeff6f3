//! What one step produces: [`Outputs`].

use crate::ids::{GitterRoomId, GitterUserId, OwnedRoomId, OwnedUserId, RequestId, Timestamp};
use crate::state::{Change, ChangeSet, PortalState, Snapshot};

/// The outputs of one [`crate::Bridge::handle`] step.
///
/// The driver must commit `changes` (one store write transaction, which also adds and removes
/// outbox rows) *before* it acknowledges the input (HTTP 200 to the homeserver) and *before*
/// it executes `effects` or sends `replies`.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Outputs {
    /// What to persist.
    pub changes: ChangeSet,
    /// What to do, in order (per lane). An effect whose id the driver holds (see `holds`) is
    /// that effect tried again: it runs at once, at the head of its lane.
    pub effects: Vec<crate::Effect>,
    /// Effects whose result this step received but which are not finished: they failed for
    /// a reason that can pass (or a reconcile read found nothing) and stay in the outbox to
    /// be tried again. The driver keeps their lanes busy, so later effects of the same lane
    /// stay behind them, until the core re-emits them in `effects`.
    pub holds: Vec<crate::EffectId>,
    /// Answers to pending web requests.
    pub replies: Vec<(RequestId, WebReply)>,
    /// When to call `handle(now, Input::Timer)` next, if ever.
    pub next_timer: Option<Timestamp>,
    /// Problems worth a log line (an input that made no sense, an effect that failed).
    pub warnings: Vec<crate::CoreError>,
    /// What an operator follows one user by (logins, portals opening and closing): an info
    /// line each, carrying the ids.
    pub happenings: Vec<Happening>,
}

/// A turn in one user's use of the bridge, for the operator's log. Derived from the changes
/// to users and portals ([`Happening::of`]), so no flow can forget to report one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Happening {
    /// `user` linked the Gitter account `username` (`gitter_user`), or logged in again.
    LoggedIn {
        /// The Matrix user.
        user: OwnedUserId,
        /// The Gitter account's id.
        gitter_user: GitterUserId,
        /// The Gitter account's username.
        username: String,
    },
    /// `user`'s login was forgotten (`logout`, or the account was linked elsewhere).
    LoggedOut {
        /// The Matrix user.
        user: OwnedUserId,
    },
    /// Gitter refused `user`'s token: the login is kept but no longer used.
    LoginRevoked {
        /// The Matrix user.
        user: OwnedUserId,
    },
    /// The portal of `owner` for `gitter_room` was created as `room`.
    PortalCreated {
        /// The portal's owner.
        owner: OwnedUserId,
        /// The Gitter room.
        gitter_room: GitterRoomId,
        /// The Matrix room.
        room: OwnedRoomId,
    },
    /// The portal of `owner` for `gitter_room` stopped relaying (left, kicked, logged out, or
    /// its room could not be created).
    PortalClosed {
        /// The portal's owner.
        owner: OwnedUserId,
        /// The Gitter room.
        gitter_room: GitterRoomId,
    },
}

impl Happening {
    /// What `change` does to a user or portal as `before` has them, if it is worth a line.
    pub(crate) fn of(change: &Change, before: &Snapshot) -> Option<Happening> {
        match change {
            Change::PutUser(u) => {
                let old = before.users.get(&u.user).and_then(|o| o.login.as_ref());
                match (old, u.login.as_ref()) {
                    (_, Some(new))
                        if new.valid && old.is_none_or(|o| !o.valid || o.token != new.token) =>
                    {
                        Some(Happening::LoggedIn {
                            user: u.user.clone(),
                            gitter_user: new.gitter_id.clone(),
                            username: new.username.clone(),
                        })
                    }
                    (Some(o), Some(new)) if o.valid && !new.valid => {
                        Some(Happening::LoginRevoked {
                            user: u.user.clone(),
                        })
                    }
                    (Some(_), None) => Some(Happening::LoggedOut {
                        user: u.user.clone(),
                    }),
                    _ => None,
                }
            }
            Change::PutPortal(p) => {
                let old = before
                    .portals
                    .get(&(p.owner.clone(), p.gitter_room.clone()));
                if p.room_id.is_some() && old.is_none_or(|o| o.room_id.is_none()) {
                    Some(Happening::PortalCreated {
                        owner: p.owner.clone(),
                        gitter_room: p.gitter_room.clone(),
                        room: p.room_id.clone()?,
                    })
                } else if p.state == PortalState::Closed
                    && old.is_some_and(|o| o.state != PortalState::Closed)
                {
                    Some(Happening::PortalClosed {
                        owner: p.owner.clone(),
                        gitter_room: p.gitter_room.clone(),
                    })
                } else {
                    None
                }
            }
            _ => None,
        }
    }
}

/// An answer to a login-page request. The binary renders it as escaped HTML.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WebReply {
    /// A page asking the person to confirm, with one button that POSTs to the same address
    /// carrying `csrf`; the web layer gives the browser `csrf` as a cookie too and accepts
    /// the POST only when both agree (double-submit: another site cannot read the cookie).
    Confirm {
        /// Title.
        title: String,
        /// What confirming does, naming the accounts.
        message: String,
        /// The button's label.
        button: String,
        /// The form's CSRF token.
        csrf: String,
    },
    /// `302 Found` to Gitter's authorize URL; the browser gets `state` as a cookie, so the
    /// callback is accepted only from the browser that confirmed.
    OAuthRedirect {
        /// Where to.
        url: String,
        /// The OAuth state in the URL.
        state: String,
    },
    /// A small page.
    Page {
        /// HTTP status.
        status: u16,
        /// Title.
        title: String,
        /// One paragraph of text.
        message: String,
    },
}
