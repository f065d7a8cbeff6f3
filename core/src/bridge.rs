//! The [`Bridge`] value: a dispatcher over the sub-machines that own the bridge's state. It
//! takes each input to the sub-machine it is for, each effect's answer to the one that asked
//! (through the effect's continuation), and each timer to the ones whose deadline came; it
//! asks each for its next deadline. The flows live in the modules named for them (`invite`,
//! `login`, `commands`, `portal`, `ghost`, `relay`, `stream`, `prune`), each beside the state
//! its sub-machine owns; the durable retry schedule is `retry`, the dedupe windows `dedupe`.

use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

use crate::dedupe::Dedupe;
use crate::effect::{
    Action, Effect, GitterCall, Lane, LoginThen, MatrixCall, RelayThen, StoreCall, Then,
};
use crate::error::CoreError;
use crate::ids::{AsTxnId, EffectId, GitterRoomId, OwnedRoomId, OwnedUserId, Timestamp};
use crate::input::{EffectOutput, EffectResult, Input, MatrixEvent, MatrixEventKind};
use crate::login::Logins;
use crate::output::Outputs;
use crate::portal::{Portals, RoomRole};
use crate::relay::Relay;
use crate::retry::Retries;
use crate::state::{Change, PortalState, Snapshot};
use crate::step::Step;
use crate::stream::Streams;
use crate::timers::TimerKind;
use crate::{Config, GitterMessage};

/// The seed of the core's random generator, from which login links, OAuth states, CSRF
/// tokens and retry jitter are drawn. The driver gives 32 bytes from the operating system
/// (the full 256-bit ChaCha20 key: a `u64` seed would leave every link of a run guessable
/// from 64 bits); tests give a number, and the core is deterministic for a given seed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Seed {
    /// A full ChaCha20 key.
    Bytes([u8; 32]),
    /// A number, expanded as `rand_core`'s `seed_from_u64` does (for tests).
    Number(u64),
}

impl From<[u8; 32]> for Seed {
    fn from(bytes: [u8; 32]) -> Seed {
        Seed::Bytes(bytes)
    }
}

impl From<u64> for Seed {
    fn from(n: u64) -> Seed {
        Seed::Number(n)
    }
}

/// After this many failed tries of a user's message, the user is told it is delayed (once).
const DELAY_NOTICE_AFTER: u32 = 3;

/// The bridge state machine. See the crate documentation for the contract.
pub struct Bridge {
    pub(crate) config: Config,
    rng: ChaCha20Rng,
    /// The persistent state (what the store holds, the hot set of the mappings only);
    /// changed only through [`Bridge::change`]. The sub-machines below own what is derived
    /// from it or lives in memory only.
    pub(crate) state: Snapshot,
    /// The current step: its time and outputs.
    pub(crate) step: Step,
    /// Which Matrix room is whose, and the portals of each Gitter room.
    pub(crate) portals: Portals,
    /// Stream states, waiting messages, recent ids and catch-up retries per Gitter room.
    pub(crate) streams: Streams,
    /// Sends in flight and the order of the hot mappings.
    pub(crate) relay: Relay,
    /// When login links and OAuth states are forgotten; who was told they may not use the
    /// bridge.
    pub(crate) logins: Logins,
    /// Transactions and events processed.
    dedupe: Dedupe,
    /// The durable retry schedule.
    retries: Retries,
    /// Retention of the store's mappings.
    pub(crate) pruning: crate::prune::Pruning,
    /// Edits applied, deletions made from Matrix, users watched (realtime events).
    pub(crate) realtime: crate::realtime::Realtime,
    /// Images of Gitter messages uploaded lately, by URL.
    pub(crate) images: crate::images::Uploads,
}

impl Bridge {
    /// A bridge with an empty state.
    pub fn new(config: Config, seed: impl Into<Seed>) -> Bridge {
        Bridge::restore(config, seed, Snapshot::default())
    }

    /// A bridge continuing from a snapshot loaded by the store. Call
    /// `handle(now, Input::Startup)` next so streams re-open and the outbox is replayed.
    pub fn restore(config: Config, seed: impl Into<Seed>, snapshot: Snapshot) -> Bridge {
        let rng = match seed.into() {
            Seed::Bytes(bytes) => ChaCha20Rng::from_seed(bytes),
            Seed::Number(n) => ChaCha20Rng::seed_from_u64(n),
        };
        Bridge {
            portals: Portals::restore(&snapshot),
            relay: Relay::restore(&snapshot),
            logins: Logins::restore(&snapshot),
            dedupe: Dedupe::restore(&snapshot, config.dedupe_capacity),
            streams: Streams::default(),
            retries: Retries::default(),
            pruning: Default::default(),
            realtime: Default::default(),
            images: Default::default(),
            step: Step::default(),
            config,
            rng,
            state: snapshot,
        }
    }

    /// The persistent state as it stands (what a store holding every committed change set
    /// would load).
    pub fn snapshot(&self) -> &Snapshot {
        &self.state
    }

    /// The configuration.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Handles one input at time `now` and returns the step's outputs.
    pub fn handle(&mut self, now: Timestamp, input: Input) -> Outputs {
        // Time never goes backwards inside the core, even if the driver's clock does.
        self.step.start(now);
        let first_effect_id = self.state.next_effect_id;
        match input {
            Input::Startup => self.on_startup(),
            Input::Transaction { txn_id, events } => self.on_transaction(txn_id, events),
            Input::GitterMessage { room, message } => self.on_gitter_message(room, message, false),
            Input::StreamConnected { room } => self.on_stream_connected(room),
            Input::StreamDisconnected { room, reason } => self.on_stream_disconnected(room, reason),
            Input::Realtime(event) => self.on_realtime(event),
            Input::LoginLinkOpened { request, token } => self.on_login_link(request, &token),
            Input::LoginLinkConfirmed { request, token } => {
                self.on_login_confirmed(request, &token)
            }
            Input::OAuthCallback {
                request,
                code,
                state,
                error,
                browser,
            } => self.on_oauth_callback(request, code, state, error, browser),
            Input::EffectDone { id, result } => self.on_effect_done(id, result),
            Input::Timer => self.on_timer(),
        }
        if self.state.next_effect_id != first_effect_id {
            self.step
                .record(Change::SetNextEffectId(EffectId(self.state.next_effect_id)));
        }
        let next = self.next_deadline().map(|(at, _)| at);
        self.step.finish(next)
    }

    // ---------------------------------------------------------------- step bookkeeping

    /// Applies a change to the state and records it in the step's change set; the
    /// sub-machines that index what it changes follow it.
    pub(crate) fn change(&mut self, change: Change) {
        if let Change::PutMessage(m) = &change {
            // The relay's write, once per portal and message (and again with its event): one
            // put that says whether the mapping is new, instead of a look-up first. No other
            // sub-machine follows mappings.
            if self.state.messages.insert(m.clone()) {
                let bounds = (
                    self.config.hot_mappings,
                    self.config.hot_mappings_per_portal,
                );
                self.relay.hot_added(&mut self.state, bounds, m);
            }
            self.step.record(change);
            return;
        }
        self.portals.observe(&change, &self.state);
        self.logins.observe(&change);
        if let Some(h) = crate::Happening::of(&change, &self.state) {
            self.step.happened(h);
        }
        self.state.apply(&change);
        self.step.record(change);
    }

    /// Emits an effect whose answer nobody waits for (see [`Bridge::ask`]).
    pub(crate) fn emit(&mut self, lane: Lane, action: Action) -> EffectId {
        self.ask(lane, action, Then::Nothing)
    }

    /// Emits an effect whose answer goes to `then`: assigns its id, puts it in the outbox,
    /// and adds it to the outputs.
    pub(crate) fn ask(&mut self, lane: Lane, action: Action, then: Then) -> EffectId {
        let id = EffectId(self.state.next_effect_id);
        // Recorded once at the end of the step (`handle`), not once per effect: only the last
        // value matters to the store.
        self.state.next_effect_id += 1;
        self.relay.observe_emitted(&action);
        let effect = Effect {
            id,
            lane,
            action,
            then,
        };
        self.change(Change::PutOutbox(effect.clone()));
        self.step.execute(effect);
        id
    }

    /// Reports a problem worth a log line.
    pub(crate) fn warn(&mut self, e: CoreError) {
        self.step.warn(e);
    }

    /// Answers a pending web request.
    pub(crate) fn reply(&mut self, request: crate::RequestId, reply: crate::WebReply) {
        self.step.reply(request, reply);
    }

    /// Sends a notice from the bot into a user's control room (dropped when the user has
    /// none: there is nowhere to say it).
    pub(crate) fn notice(&mut self, user: &OwnedUserId, text: impl Into<String>) {
        let room = self
            .state
            .users
            .get(user)
            .and_then(|u| u.control_room.clone());
        if let Some(room) = room {
            self.notice_in(Lane::User(user.clone()), room, text);
        }
    }

    /// Sends a notice from the bot into a given room: `text` is markdown ([`crate::notice`]).
    pub(crate) fn notice_in(&mut self, lane: Lane, room: OwnedRoomId, text: impl Into<String>) {
        let bot = self.config.bot.clone();
        self.emit(
            lane,
            Action::Matrix(MatrixCall::SendMessage {
                room,
                sender: bot,
                content: crate::notice::render(&text.into(), &self.config.public_url),
                ts: None,
            }),
        );
    }

    /// A fresh 128-bit token from the seeded RNG, as 32 hex characters.
    pub(crate) fn random_token(&mut self) -> String {
        let mut bytes = [0u8; 16];
        self.rng.fill_bytes(&mut bytes);
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Each sub-machine's earliest deadline, with why it fires: each keeps its deadlines
    /// ordered, so this costs the same however large the bridge.
    fn deadlines(&self) -> [(Option<Timestamp>, TimerKind); 4] {
        [
            (self.logins.deadline(), TimerKind::ForgetTicket),
            (self.streams.deadline(), TimerKind::CatchUpRetry),
            (self.retries.deadline(), TimerKind::EffectRetry),
            (self.pruning.deadline(), TimerKind::Prune),
        ]
    }

    /// The earliest deadline the core needs a timer for, and whose it is.
    fn next_deadline(&self) -> Option<(Timestamp, TimerKind)> {
        self.deadlines()
            .into_iter()
            .filter_map(|(at, kind)| at.map(|at| (at, kind)))
            .min()
    }

    /// A timer fired: the sub-machines whose deadline has come do their work, and only
    /// they (the driver's timer may fire late, so several can be due at once).
    fn on_timer(&mut self) {
        let now = self.step.now;
        for (at, kind) in self.deadlines() {
            if at.is_none_or(|at| at > now) {
                continue;
            }
            match kind {
                TimerKind::ForgetTicket => {
                    for change in self.logins.due(now) {
                        self.change(change);
                    }
                }
                TimerKind::CatchUpRetry => self.retry_catch_ups(),
                TimerKind::EffectRetry => self.retry_due_effects(),
                TimerKind::Prune => self.prune_if_due(),
            }
        }
    }

    /// Effects retrying now (for metrics).
    pub fn retrying(&self) -> usize {
        self.retries.len()
    }

    /// Messages of a room waiting for a catch-up or for their authors' sends (for tests and
    /// metrics).
    pub fn held_messages(&self, room: &GitterRoomId) -> usize {
        self.streams.waiting(room)
    }

    /// When the oldest retrying effect first failed (for metrics).
    pub fn oldest_retry_since(&self) -> Option<Timestamp> {
        self.retries.oldest_since()
    }

    /// Re-emits the durable effects whose retry time has come. Each keeps its id, so the
    /// driver runs it at the head of the lane it held.
    fn retry_due_effects(&mut self) {
        for id in self.retries.due(self.step.now) {
            match self.state.outbox.get(&id).cloned() {
                Some(effect) => {
                    let effect = self.refresh_token(effect);
                    self.step.execute(effect);
                }
                None => self.retries.done(id),
            }
        }
    }

    /// A Gitter send retried long after it was emitted carries the token of then; if the
    /// owner has logged in again to the same Gitter account since, the new token is used
    /// (the old one may be revoked by now).
    fn refresh_token(&mut self, mut effect: Effect) -> Effect {
        if let (
            Action::Gitter {
                token,
                call: GitterCall::SendMessage { gitter_user, .. },
            },
            Then::Relay(RelayThen::ToGitter(origin)),
        ) = (&mut effect.action, &effect.then)
            && let Some(login) = self.valid_login(&origin.owner)
            && &login.gitter_id == gitter_user
            && &login.token != token
        {
            *token = login.token;
            self.change(Change::PutOutbox(effect.clone()));
        }
        effect
    }

    /// Keeps a failed durable effect in the outbox and schedules its next try: capped
    /// exponential backoff with jitter from the seeded RNG (so many effects failing together
    /// do not all come back at once).
    fn schedule_retry(&mut self, mut effect: Effect, failure: crate::Failure) {
        let id = effect.id;
        // Still in the outbox (the store never saw it leave).
        self.state.outbox.insert(id, effect.clone());
        let (attempts, delay) = self.retries.failed(
            id,
            self.step.now,
            self.config.retry_min_ms,
            self.config.retry_max_ms,
            &mut self.rng,
        );
        // A send that failed in a way that leaves its outcome unknown (a time-out, a lost
        // answer, a 5xx) may have been stored by Gitter: the next try reads before it posts.
        // A rate-limited send was refused, so it simply posts again.
        if let Action::Gitter {
            call: GitterCall::SendMessage { reconcile, .. },
            ..
        } = &mut effect.action
            && failure.kind == crate::FailureKind::Transient
            && !*reconcile
        {
            *reconcile = true;
            self.change(Change::PutOutbox(effect.clone()));
        }
        // Told in their own lane: the portal's or the user's is held by this very effect.
        match &effect.then {
            Then::Relay(RelayThen::ToGitter(origin)) if attempts == DELAY_NOTICE_AFTER => {
                self.notice_in(
                    Lane::Notices(origin.owner.clone()),
                    origin.room.clone(),
                    "Gitter is not answering at the moment. Your message is kept and will be \
                     sent as soon as Gitter is back.",
                );
            }
            Then::Command(command) if attempts == 1 => {
                let user = command.user();
                if let Some(room) = self
                    .state
                    .users
                    .get(user)
                    .and_then(|u| u.control_room.clone())
                {
                    self.notice_in(
                        Lane::Notices(user.clone()),
                        room,
                        "Gitter is not answering right now. I will keep trying and answer as \
                         soon as it is back.",
                    );
                }
            }
            _ => {}
        }
        self.step.hold(id);
        self.warn(CoreError::EffectRetrying {
            id,
            action: effect.action.name(),
            failure,
            attempt: attempts,
            retry_in_ms: delay,
        });
    }

    /// Re-emits a held effect at once (a reconcile read that found nothing: now it posts).
    /// Goes on with an effect whose answer just came as another action under the same id:
    /// the driver holds its lane, as for a retry, and runs it at the head, so nothing emitted
    /// to the lane meanwhile overtakes it. So a send that needs a store lookup first keeps
    /// the place in its portal's order that its message has.
    pub(crate) fn continue_as(&mut self, id: EffectId, lane: Lane, action: Action, then: Then) {
        self.relay.observe_emitted(&action);
        let effect = Effect {
            id,
            lane,
            action,
            then,
        };
        self.change(Change::PutOutbox(effect.clone()));
        self.step.hold(id);
        self.step.execute(effect);
    }

    fn retry_now(&mut self, effect: Effect) {
        self.change(Change::PutOutbox(effect.clone()));
        self.retries.again_now(effect.id, self.step.now);
        self.step.hold(effect.id);
        self.step.execute(effect);
    }

    // ---------------------------------------------------------------- startup

    fn on_startup(&mut self) {
        // Stream state is not persisted: every stream is closed until re-opened here.
        self.streams.clear();
        let pending: Vec<Effect> = self.state.outbox.values().cloned().collect();
        for mut effect in pending {
            match (&mut effect.action, &effect.then) {
                // A new portal's history read is replayed with the rest (its lane's order
                // puts it before the portal's creation, crate::history); dropped, the portal
                // would start empty without a word.
                (_, Then::Portal(crate::PortalThen::History { .. })) => {
                    self.step.execute(effect);
                }
                // Stream control and catch-up reads are re-derived below, not replayed; a
                // pass of pruning starts again on its timer.
                (
                    Action::Stream(_)
                    | Action::Gitter {
                        call: GitterCall::FetchMessages { .. },
                        ..
                    }
                    | Action::Store(StoreCall::PruneMappings { .. }),
                    _,
                ) => {
                    self.change(Change::DeleteOutbox(effect.id));
                }
                // The steps of a login answer a browser that is gone with the old process
                // (its request id meant something only there), and an OAuth code must not be
                // exchanged with nobody behind it: the person gets a fresh link instead.
                (
                    _,
                    Then::Login(
                        LoginThen::CodeExchanged { user, .. } | LoginThen::UserFetched { user, .. },
                    ),
                ) => {
                    let user = user.clone();
                    self.change(Change::DeleteOutbox(effect.id));
                    let link = self.new_login_link(&user);
                    self.notice(
                        &user,
                        format!(
                            "Your Gitter login did not finish because the bridge restarted. \
                             Open this new link to log in: {link}"
                        ),
                    );
                }
                // A Gitter POST has no idempotency key: the send may have happened before
                // the crash, so the adapter first looks for it among recent messages.
                (
                    Action::Gitter {
                        call: GitterCall::SendMessage { reconcile, .. },
                        ..
                    },
                    _,
                ) => {
                    if !*reconcile {
                        *reconcile = true;
                        self.change(Change::PutOutbox(effect.clone()));
                    }
                    self.step.execute(effect);
                }
                _ => self.step.execute(effect),
            }
        }
        for room in self.portals.gitter_rooms() {
            self.ensure_reader(&room);
        }
        self.watch_all_users();
        self.prune_on_startup();
    }

    // ---------------------------------------------------------------- Matrix intake

    fn on_transaction(&mut self, txn_id: AsTxnId, events: Vec<MatrixEvent>) {
        // The homeserver retries a transaction with the same id and events until it gets a
        // 200: a retry must do nothing (AS API, "Pushing events").
        let Some(changes) = self.dedupe.new_txn(&txn_id) else {
            return;
        };
        for change in changes {
            self.change(change);
        }
        for event in events {
            // Duplicated delivery under different transaction ids happens in the wild
            // (element-hq/synapse#11447), so events are deduplicated too.
            let Some(changes) = self.dedupe.new_event(&event.event_id) else {
                continue;
            };
            for change in changes {
                self.change(change);
            }
            self.on_matrix_event(event);
        }
    }

    fn on_matrix_event(&mut self, event: MatrixEvent) {
        // The bridge's own users (bot and ghosts) are never bridged: their events come back
        // to us in transactions and would loop.
        let own = event.sender == self.config.bot || self.is_ghost(&event.sender);
        match &event.kind {
            MatrixEventKind::Member { target, membership } => {
                self.on_member(&event, target.clone(), *membership)
            }
            MatrixEventKind::EncryptedInvite { target } if *target == self.config.bot => {
                self.on_bot_invited(event.room_id.clone(), event.sender.clone(), true)
            }
            MatrixEventKind::EncryptedInvite { target } => {
                self.on_member(&event, target.clone(), crate::Membership::Invite)
            }
            MatrixEventKind::Message { msgtype, body, .. } if !own => {
                let role = self.portals.role(&event.room_id).cloned();
                match role {
                    Some(RoomRole::Control(user))
                        if user == event.sender
                            && *msgtype == crate::MsgType::Text
                            && self.still_permitted(&user) =>
                    {
                        self.on_command(&user, body);
                    }
                    Some(RoomRole::Portal(owner, room))
                        if owner == event.sender && self.still_permitted(&owner) =>
                    {
                        self.on_portal_message(&owner, &room, &event)
                    }
                    _ => {}
                }
            }
            MatrixEventKind::Media { .. } if !own => {
                if let Some(RoomRole::Portal(owner, room)) =
                    self.portals.role(&event.room_id).cloned()
                    && owner == event.sender
                    && self.still_permitted(&owner)
                {
                    self.on_portal_message(&owner, &room, &event)
                }
            }
            MatrixEventKind::Edit {
                target,
                msgtype,
                body,
                formatted_body,
            } if !own => {
                let status = match msgtype {
                    crate::MsgType::Emote => true,
                    crate::MsgType::Text | crate::MsgType::Notice => false,
                    // What was never bridged cannot be edited there either.
                    crate::MsgType::Other(_) => return,
                };
                self.on_owner_correction(&event, target.clone(), |bridge| {
                    crate::CorrectionKind::Edit {
                        body: bridge.matrix_text(body, formatted_body.as_deref()),
                        status,
                    }
                });
            }
            MatrixEventKind::Redaction { target } if !own => {
                self.on_owner_correction(&event, target.clone(), |_| crate::CorrectionKind::Redact);
            }
            MatrixEventKind::Encrypted | MatrixEventKind::EncryptionEnabled if !own => {
                self.on_encrypted(&event)
            }
            _ => {}
        }
    }

    /// An edit or redaction: bridged when the portal's owner made it, and may still use the
    /// bridge.
    fn on_owner_correction(
        &mut self,
        event: &MatrixEvent,
        target: crate::OwnedEventId,
        what: impl FnOnce(&Bridge) -> crate::CorrectionKind,
    ) {
        if let Some(RoomRole::Portal(owner, room)) = self.portals.role(&event.room_id).cloned()
            && owner == event.sender
            && self.still_permitted(&owner)
        {
            self.on_portal_correction(crate::Correction {
                owner,
                room,
                portal: event.room_id.clone(),
                target,
                event_id: event.event_id.clone(),
                // Converted only for an edit that is bridged.
                what: what(self),
            });
        }
    }

    /// Whether `user` may still use the bridge. Permissions are checked on every input a
    /// user causes, not only when the bot is invited: an operator who removes somebody from
    /// the allow list (and restarts) must see nothing more posted on their behalf. A user no
    /// longer allowed is told once per run, in their control room.
    pub(crate) fn still_permitted(&mut self, user: &OwnedUserId) -> bool {
        if self.config.permissions.allows(user) {
            self.logins.told_not_permitted.remove(user);
            return true;
        }
        if self.logins.told_not_permitted.insert(user.clone()) {
            self.notice(
                user,
                "You are no longer allowed to use this bridge, so nothing is bridged for you \
                 now: your commands are not answered, your messages are not sent to Gitter, and \
                 your bridged rooms get no Gitter messages. Ask the bridge's operator if this is \
                 a mistake.",
            );
        }
        false
    }

    // ---------------------------------------------------------------- effect results

    fn on_effect_done(&mut self, id: EffectId, mut result: EffectResult) {
        // Taken out, not cloned (it is the common path: a completion); a retry puts it back.
        let Some(effect) = self.state.outbox.remove(&id) else {
            self.warn(CoreError::UnknownEffect(id));
            return;
        };
        // A reconcile read decides whether the send already happened; if not, the same
        // effect posts now, still holding its lane, after everything the read saw.
        if let (
            Some(GitterCall::SendMessage {
                reconcile: true, ..
            }),
            Ok(EffectOutput::Reconciled { mine, newest }),
        ) = (effect.action.gitter_send(), &result)
        {
            match self.reconciled_send(&effect, mine) {
                Some(message) => result = Ok(EffectOutput::GitterMessage(message)),
                None if self.send_too_old(id) => {
                    // Known not to be on Gitter, and failing for too long: the room's later
                    // messages have waited behind it long enough.
                    result = Err(crate::Failure::new(
                        crate::FailureKind::Rejected,
                        crate::relay::GAVE_UP,
                    ));
                }
                None => {
                    let newest = newest.clone();
                    let mut effect = effect;
                    if let Action::Gitter {
                        call:
                            GitterCall::SendMessage {
                                reconcile, after, ..
                            },
                        ..
                    } = &mut effect.action
                    {
                        *reconcile = false;
                        if newest.is_some() {
                            *after = newest;
                        }
                    }
                    self.retry_now(effect);
                    return;
                }
            }
        }
        if let Err(failure) = &result
            && matches!(
                failure.kind,
                crate::FailureKind::Transient | crate::FailureKind::RateLimited
            )
            && effect.action.is_durable()
        {
            self.schedule_retry(effect, failure.clone());
            return;
        }
        let retried = self.retries.is_retrying(id);
        self.retries.done(id);
        self.change(Change::DeleteOutbox(id));
        self.relay.observe_done(&effect.action);
        if let Err(failure) = &result {
            if failure.kind == crate::FailureKind::TokenRevoked
                && let Some(user) = self.token_owner(&effect.action)
            {
                self.invalidate_login(&user);
            }
            self.warn(CoreError::EffectFailed {
                id,
                action: effect.action.name(),
                failure: failure.clone(),
            });
        }
        self.answer(effect, result, retried);
    }

    /// Whether a send has been failing longer than `send_give_up_ms` (in this run).
    fn send_too_old(&self, id: EffectId) -> bool {
        self.retries
            .failing_longer_than(id, self.step.now, self.config.send_give_up_ms)
    }

    /// Which of the author's messages read by a reconcile is this send, if any. Only
    /// messages no Matrix event is mapped to count (in any portal of the room: another
    /// Matrix user may be logged in to the same Gitter account), and none the owner's portal
    /// got from Gitter; matched by author, text, `/me` and thread. Identical texts are
    /// counted: the n-th unclaimed copy belongs to the n-th of the sends of that text whose
    /// outcome is unknown. Gitter's clock is never compared with ours.
    fn reconciled_send(&self, effect: &Effect, found: &[GitterMessage]) -> Option<GitterMessage> {
        let (
            Some(GitterCall::SendMessage {
                room,
                gitter_user,
                text,
                status,
                parent,
                ..
            }),
            Then::Relay(RelayThen::ToGitter(origin)),
        ) = (effect.action.gitter_send(), &effect.then)
        else {
            return None;
        };
        // Only sends already tried (their outcome unknown) can have a copy on Gitter.
        let same_send = |a: &Action| {
            matches!(a.gitter_send(), Some(GitterCall::SendMessage { room: r, gitter_user: g, text: t, status: s, parent: p, reconcile: true, .. })
                if r == room && g == gitter_user && t == text && s == status && p == parent)
        };
        let owners = self.portals.owners(room);
        let claimed = |id: &crate::GitterMessageId| {
            self.state.messages.contains(&origin.owner, id)
                || owners.iter().any(|o| {
                    self.state
                        .messages
                        .get(o, id)
                        .is_some_and(|m| m.origin == crate::Origin::Matrix)
                })
        };
        let earlier = self
            .state
            .outbox
            .range(..effect.id)
            .filter(|(_, e)| same_send(&e.action))
            .count();
        found
            .iter()
            .filter(|m| {
                &m.from.id == gitter_user
                    && &m.text == text
                    && m.status == *status
                    && &m.parent_id == parent
                    && !claimed(&m.id)
            })
            .nth(earlier)
            .cloned()
    }

    /// Hands an effect's result to the part of the core that asked for it.
    fn answer(&mut self, effect: Effect, result: EffectResult, retried: bool) {
        let Effect {
            id,
            lane,
            action,
            then,
        } = effect;
        let answer = crate::effect::Answer {
            id,
            name: action.name(),
            lane,
            action,
            result,
            retried,
        };
        match then {
            Then::Nothing => {}
            Then::Ghost(then) => self.on_ghost_answer(then, answer),
            Then::Invite(then) => self.on_invite_answer(then, answer),
            Then::Portal(then) => self.on_portal_answer(then, answer),
            Then::Relay(then) => self.on_relay_answer(then, answer),
            Then::Login(then) => self.on_login_answer(then, answer),
            Then::Command(then) => self.on_command_answer(then, answer),
            Then::Stream(then) => self.on_stream_answer(then, answer),
            Then::Prune(then) => self.on_prune_answer(then, answer),
            Then::Edit(then) => self.on_edit_answer(then, answer),
            Then::Realtime(then) => self.on_realtime_answer(then, answer),
        }
    }

    /// Reports a result of the wrong kind for what was asked (an adapter's bug).
    pub(crate) fn unexpected(&mut self, id: EffectId, name: &'static str, got: &EffectOutput) {
        self.warn(CoreError::UnexpectedResult {
            id,
            action: name,
            got: format!("{got:?}"),
        });
    }

    /// The Matrix user whose token an action used.
    fn token_owner(&self, action: &Action) -> Option<OwnedUserId> {
        let token = action.gitter_token()?;
        self.state
            .users
            .values()
            .find(|u| u.login.as_ref().is_some_and(|l| &l.token == token))
            .map(|u| u.user.clone())
    }

    /// A label for a Gitter room in messages: its uri, else its name, else its id.
    pub(crate) fn room_label(&self, room: &GitterRoomId) -> String {
        match self.state.gitter_rooms.get(room) {
            Some(r) => r.uri.clone().unwrap_or_else(|| r.name.clone()),
            None => room.to_string(),
        }
    }

    /// Whether the portal of (owner, room) receives Gitter messages: open, and its owner
    /// still allowed to use the bridge.
    pub(crate) fn portal_receives(&self, owner: &OwnedUserId, room: &GitterRoomId) -> bool {
        self.config.permissions.allows(owner)
            && self
                .state
                .portals
                .get(&(owner.clone(), room.clone()))
                .is_some_and(|p| p.state.is_open() || p.state == PortalState::Creating)
    }
}
