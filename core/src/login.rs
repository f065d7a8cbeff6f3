//! Login: single-use links, the OAuth2 authorization-code flow, and dying tokens.
//!
//! The link is `<public_url>/login/<token>`: 128 random bits from the seeded RNG, single-use,
//! expiring, bound to the Matrix user. Opening it (a GET, which link-preview fetchers do too)
//! spends nothing: it shows a page that names the Matrix account the Gitter account will be
//! linked to, with one button. Only that button's POST, carrying a CSRF token that matches a
//! cookie of the same browser, spends the link and redirects to Gitter's authorize URL with a
//! fresh `state` (single-use, expiring), which that browser also gets as a cookie. The
//! callback is accepted only with the state of its own browser: a link sent to somebody else
//! cannot link *their* Gitter account to the sender's Matrix account without them reading
//! whose it is and saying yes. The code is exchanged, `GET /v1/user/me` names the account,
//! and the login is stored. A Gitter account is linked to one Matrix user at a time: linking
//! it again moves it, and the previous Matrix user is logged out and told.

use std::collections::BTreeSet;

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, GitterCall, Lane, LoginThen, Then};
use crate::ids::Timestamp;
use crate::ids::{OwnedUserId, RequestId, Secret};
use crate::input::{EffectOutput, Failure, FailureKind, GitterUser};
use crate::output::WebReply;
use crate::state::{Change, Login, Snapshot, Ticket};
use crate::timers::Deadlines;

/// Percent-encodes a query-string value (RFC 3986 unreserved characters pass through).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The page for a login of a Matrix user no longer allowed to use the bridge.
fn not_allowed() -> WebReply {
    page(
        403,
        "Not allowed",
        "This Matrix account is not allowed to use this bridge. Ask the bridge's operator.",
    )
}

/// How long an expired login link or OAuth state is kept before the timer forgets it.
/// Forgetting it at expiry would turn the "expired" page into "unknown or already used" for
/// anyone who opens an old link; the ticket can no longer be used either way. An hour
/// covers a person coming back to the tab; rows do not pile up for a day.
const EXPIRED_TICKET_KEPT_MS: u64 = 60 * 60 * 1000;

/// The two tables of single-use tokens, whose rows the timer forgets after expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum TicketTable {
    LoginLinks,
    OAuthStates,
}

/// The logins sub-machine's state beside the persisted links and OAuth states: when each of
/// them is forgotten, and who was told in this run that they may no longer use the bridge.
#[derive(Clone, Debug, Default)]
pub(crate) struct Logins {
    forget: Deadlines<(TicketTable, String)>,
    pub(crate) told_not_permitted: BTreeSet<OwnedUserId>,
}

impl Logins {
    /// The timers of a restored state.
    pub(crate) fn restore(state: &Snapshot) -> Logins {
        let mut logins = Logins::default();
        for (k, t) in &state.login_links {
            logins
                .forget
                .set((TicketTable::LoginLinks, k.clone()), forget_at(t));
        }
        for (k, t) in &state.oauth_states {
            logins
                .forget
                .set((TicketTable::OAuthStates, k.clone()), forget_at(t));
        }
        logins
    }

    /// Follows a change of the links and OAuth states (whoever makes it).
    pub(crate) fn observe(&mut self, change: &Change) {
        match change {
            Change::PutLoginLink(k, t) => self
                .forget
                .set((TicketTable::LoginLinks, k.clone()), forget_at(t)),
            Change::DeleteLoginLink(k) => self.forget.clear(&(TicketTable::LoginLinks, k.clone())),
            Change::PutOAuthState(k, t) => self
                .forget
                .set((TicketTable::OAuthStates, k.clone()), forget_at(t)),
            Change::DeleteOAuthState(k) => {
                self.forget.clear(&(TicketTable::OAuthStates, k.clone()))
            }
            _ => {}
        }
    }

    /// The timer this sub-machine needs.
    pub(crate) fn deadline(&self) -> Option<Timestamp> {
        self.forget.next()
    }

    /// The changes that forget the tickets whose time has come.
    pub(crate) fn due(&mut self, now: Timestamp) -> Vec<Change> {
        self.forget
            .take_due(now)
            .into_iter()
            .map(|(table, k)| match table {
                TicketTable::LoginLinks => Change::DeleteLoginLink(k),
                TicketTable::OAuthStates => Change::DeleteOAuthState(k),
            })
            .collect()
    }
}

/// When the timer forgets a ticket.
fn forget_at(ticket: &Ticket) -> Timestamp {
    ticket.expires.plus_ms(EXPIRED_TICKET_KEPT_MS)
}

/// Login links of one user that work at the same time, at most.
pub(crate) const MAX_LIVE_LINKS: usize = 3;

fn page(status: u16, title: &str, message: impl Into<String>) -> WebReply {
    WebReply::Page {
        status,
        title: title.to_owned(),
        message: message.into(),
    }
}

impl Bridge {
    /// The valid token of a user, if logged in.
    pub(crate) fn valid_login(&self, user: &OwnedUserId) -> Option<crate::Login> {
        self.state
            .users
            .get(user)
            .and_then(|u| u.login.clone())
            .filter(|l| l.valid)
    }

    fn public_url(&self) -> &str {
        self.config.public_url.trim_end_matches('/')
    }

    /// The OAuth redirect URI (derived from the public URL; must match the one registered
    /// with Gitter exactly).
    pub fn redirect_uri(&self) -> String {
        format!("{}/oauth/callback", self.public_url())
    }

    /// Creates a login link for `user` and returns its URL. A user has at most
    /// [`MAX_LIVE_LINKS`] links that still work: asking for more forgets the oldest.
    pub(crate) fn new_login_link(&mut self, user: &OwnedUserId) -> String {
        let now = self.step.now;
        let mut live: Vec<(crate::Timestamp, String)> = self
            .state
            .login_links
            .iter()
            .filter(|(_, t)| &t.user == user && t.expires > now)
            .map(|(k, t)| (t.expires, k.clone()))
            .collect();
        live.sort();
        while live.len() >= MAX_LIVE_LINKS {
            let (_, oldest) = live.remove(0);
            self.change(Change::DeleteLoginLink(oldest));
        }
        let token = self.random_token();
        let expires = self.step.now.plus_ms(self.config.login_link_lifetime_ms);
        self.change(Change::PutLoginLink(
            token.clone(),
            Ticket {
                user: user.clone(),
                expires,
            },
        ));
        format!("{}/login/{token}", self.public_url())
    }

    /// The end of a sentence that needs a login: a fresh link, so the person can act on it
    /// at once instead of asking the bot for one.
    pub(crate) fn log_in_here(&mut self, user: &OwnedUserId) -> String {
        let link = self.new_login_link(user);
        format!("Log in here: {link}")
    }

    /// The link's ticket if it still works; otherwise answers the page saying why.
    fn live_link(&mut self, request: RequestId, token: &str) -> Option<Ticket> {
        let Some(ticket) = self.state.login_links.get(token).cloned() else {
            self.reply(
                request,
                page(
                    404,
                    "Unknown login link",
                    "This login link is unknown or was already used. \
                     Send `login` to the bridge bot for a new one.",
                ),
            );
            return None;
        };
        if ticket.expires <= self.step.now {
            self.reply(
                request,
                page(
                    410,
                    "Login link expired",
                    "This login link has expired. Send `login` to the bridge bot for a new one.",
                ),
            );
            return None;
        }
        Some(ticket)
    }

    /// A GET of the link: a page that says whose Matrix account the Gitter account will be
    /// linked to, and asks. Spends nothing (previews open links too).
    pub(crate) fn on_login_link(&mut self, request: RequestId, token: &str) {
        let Some(ticket) = self.live_link(request, token) else {
            return;
        };
        if !self.config.permissions.allows(&ticket.user) {
            self.reply(request, not_allowed());
            return;
        }
        let csrf = self.random_token();
        let user = ticket.user;
        self.reply(
            request,
            WebReply::Confirm {
                title: "Link your Gitter account".to_owned(),
                message: format!(
                    "This links the Gitter account you sign in with next to the Matrix account \
                     {user}. The bridge will read your Gitter rooms, private ones included, into \
                     {user}'s Matrix client and post there as you. Continue only if {user} is \
                     you: if somebody sent you this link, close this page."
                ),
                button: format!("Link my Gitter account to {user}"),
                csrf,
            },
        );
    }

    /// The person said yes: the link is spent and the browser goes to Gitter.
    pub(crate) fn on_login_confirmed(&mut self, request: RequestId, token: &str) {
        let Some(ticket) = self.live_link(request, token) else {
            return;
        };
        if !self.config.permissions.allows(&ticket.user) {
            self.reply(request, not_allowed());
            return;
        }
        // Single use: the link is spent whatever happens next.
        self.change(Change::DeleteLoginLink(token.to_owned()));
        let state = self.random_token();
        let expires = self.step.now.plus_ms(self.config.login_link_lifetime_ms);
        self.change(Change::PutOAuthState(
            state.clone(),
            Ticket {
                user: ticket.user,
                expires,
            },
        ));
        let url = format!(
            "{}?client_id={}&response_type=code&redirect_uri={}&state={}",
            self.config.oauth_authorize_url,
            encode(&self.config.oauth_client_id),
            encode(&self.redirect_uri()),
            encode(&state),
        );
        self.reply(request, WebReply::OAuthRedirect { url, state });
    }

    pub(crate) fn on_oauth_callback(
        &mut self,
        request: RequestId,
        code: Option<Secret>,
        state: Option<String>,
        error: Option<String>,
        browser: Option<String>,
    ) {
        let ticket = state
            .as_deref()
            .and_then(|s| self.state.oauth_states.get(s).cloned());
        if ticket.is_some() && browser.as_deref() != state.as_deref() {
            // A sign-in that this browser did not start (a callback URL passed to somebody
            // else, or forged): refused, and the state stays for its own browser.
            self.reply(
                request,
                page(
                    403,
                    "Sign-in not started here",
                    "This sign-in was started in another browser. Open the login link the \
                     bridge bot sent you, in this browser, and confirm there.",
                ),
            );
            return;
        }
        let (Some(state), Some(ticket)) = (state, ticket) else {
            self.reply(
                request,
                page(
                    400,
                    "Unknown sign-in",
                    "This sign-in is unknown, was already completed, or took too long. \
                     Send `login` to the bridge bot to start again.",
                ),
            );
            return;
        };
        self.change(Change::DeleteOAuthState(state));
        if !self.config.permissions.allows(&ticket.user) {
            self.reply(request, not_allowed());
            return;
        }
        if ticket.expires <= self.step.now {
            self.reply(
                request,
                page(
                    410,
                    "Sign-in expired",
                    "This sign-in took too long. Send `login` to the bridge bot to start again.",
                ),
            );
            return;
        }
        if let Some(error) = error {
            self.reply(
                request,
                page(
                    400,
                    "Sign-in cancelled",
                    format!(
                        "Gitter did not grant access ({error}). \
                         Send `login` to the bridge bot to try again."
                    ),
                ),
            );
            return;
        }
        let Some(code) = code.filter(|c| !c.expose().is_empty()) else {
            self.reply(
                request,
                page(
                    400,
                    "Sign-in failed",
                    "Gitter sent no authorization code. Send `login` to the bridge bot to try again.",
                ),
            );
            return;
        };
        self.ask(
            Lane::Login(ticket.user.clone()),
            Action::OAuth { code },
            Then::Login(LoginThen::CodeExchanged {
                user: ticket.user,
                request,
            }),
        );
    }

    pub(crate) fn on_login_answer(&mut self, then: LoginThen, answer: Answer) {
        match (then, answer.result) {
            (LoginThen::CodeExchanged { user, request }, Ok(EffectOutput::Token(token))) => {
                self.on_code_exchanged(user, request, token)
            }
            (LoginThen::UserFetched { user, request }, Ok(EffectOutput::GitterUser(gitter))) => {
                if let Some(token) = answer.action.gitter_token() {
                    let token = token.clone();
                    self.on_gitter_user(user, request, token, gitter)
                }
            }
            (
                LoginThen::CodeExchanged { user, request }
                | LoginThen::UserFetched { user, request },
                Err(failure),
            ) => self.on_login_failed(&user, request, &failure),
            (LoginThen::OpenPortals { user }, Ok(EffectOutput::GitterRooms(rooms))) => {
                self.on_rooms_listed(&user, true, rooms)
            }
            (LoginThen::OpenPortals { user }, Err(failure)) => {
                self.on_command_failed(&user, None, &failure, "open")
            }
            (_, Ok(got)) => self.unexpected(answer.id, answer.name, &got),
        }
    }

    fn on_code_exchanged(&mut self, user: OwnedUserId, request: RequestId, token: Secret) {
        self.ask(
            Lane::Login(user.clone()),
            Action::Gitter {
                token,
                call: GitterCall::CurrentUser,
            },
            Then::Login(LoginThen::UserFetched { user, request }),
        );
    }

    fn on_gitter_user(
        &mut self,
        user: OwnedUserId,
        request: RequestId,
        token: Secret,
        gitter: GitterUser,
    ) {
        // One Matrix user per Gitter account: whoever can sign in to the Gitter account
        // decides where it is linked, so the link moves, and the previous Matrix user is
        // logged out here and told (in their control room) where it went.
        let previous: Vec<OwnedUserId> = self
            .state
            .users
            .values()
            .filter(|u| {
                u.user != user && u.login.as_ref().is_some_and(|l| l.gitter_id == gitter.id)
            })
            .map(|u| u.user.clone())
            .collect();
        for other in previous {
            self.forget_login(
                &other,
                "Your Gitter account was linked to another Matrix account.",
            );
            self.notice(
                &other,
                format!(
                    "Your Gitter account {} was just linked to another Matrix account, {user}, by \
                     someone who signed in to it on Gitter. It is no longer linked here and you \
                     left its bridged rooms. If that was not you, change your Gitter password \
                     and send `login` to link it here again.",
                    gitter.username
                ),
            );
        }
        let mut record = self.user_record(&user);
        let old_token = record.login.as_ref().map(|l| l.token.clone());
        record.login = Some(Login {
            gitter_id: gitter.id.clone(),
            username: gitter.username.clone(),
            token: token.clone(),
            valid: true,
        });
        self.change(Change::PutUser(record));
        self.reply(
            request,
            page(
                200,
                "Logged in",
                format!(
                    "Your Gitter account {} is now linked to the Matrix account {user}. You can \
                     close this page and go back to your Matrix client.",
                    gitter.username
                ),
            ),
        );
        self.notice(
            &user,
            format!("You are now logged in as {}.", gitter.username),
        );
        self.watch_user(&user);
        // Streams this user reads with an earlier token go on with the new one: the old one
        // may be revoked next, and its refusal must not end this login.
        if old_token.is_some_and(|t| t != token) {
            let read: Vec<crate::GitterRoomId> = self
                .state
                .gitter_rooms
                .values()
                .filter(|r| r.reader.as_ref() == Some(&user) && self.streams.is_open(&r.id))
                .map(|r| r.id.clone())
                .collect();
            for room in read {
                self.open_stream(&room, &user);
            }
        }
        // Rooms this user already has portals in may need a reader again (after a revoked
        // token, for instance).
        let rooms: Vec<_> = self
            .state
            .portals
            .keys()
            .filter(|(owner, _)| owner == &user)
            .map(|(_, room)| room.clone())
            .collect();
        for room in rooms {
            self.ensure_reader(&room);
        }
        if self.config.open_portals_on_login {
            self.ask(
                Lane::User(user.clone()),
                Action::Gitter {
                    token,
                    call: GitterCall::ListRooms,
                },
                Then::Login(LoginThen::OpenPortals { user }),
            );
        }
    }

    fn on_login_failed(&mut self, user: &OwnedUserId, request: RequestId, failure: &Failure) {
        let why = match failure.kind {
            FailureKind::Transient | FailureKind::RateLimited => {
                "Gitter did not answer. Please try again in a minute."
            }
            _ => "Gitter refused the sign-in.",
        };
        self.reply(
            request,
            page(
                502,
                "Sign-in failed",
                format!("{why} Send `login` to the bridge bot for a new link."),
            ),
        );
        let again = self.log_in_here(user);
        self.notice(user, format!("Logging in to Gitter failed: {why} {again}"));
    }

    /// Marks a login invalid after Gitter answered 401, stops using its token, and asks the
    /// user to log in again. Streams it read are handed to another member.
    pub(crate) fn invalidate_login(&mut self, user: &OwnedUserId) {
        let mut record = self.user_record(user);
        let Some(login) = record.login.as_mut() else {
            return;
        };
        if !login.valid {
            return;
        }
        login.valid = false;
        self.change(Change::PutUser(record));
        self.unwatch_user(user);
        let again = self.log_in_here(user);
        self.notice(
            user,
            format!("Gitter rejected your login: the token was revoked or has expired. {again}"),
        );
        let rooms: Vec<_> = self
            .state
            .gitter_rooms
            .values()
            .filter(|r| r.reader.as_ref() == Some(user))
            .map(|r| r.id.clone())
            .collect();
        for room in rooms {
            self.ensure_reader(&room);
        }
    }
}
