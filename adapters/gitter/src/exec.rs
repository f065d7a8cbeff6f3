//! [`GitterClient::execute`]: runs one core Gitter [`Action`] against Gitter and reports an
//! [`EffectResult`]. Pure translation: the core decided what to do; this only says how it went.

use gitter_bridge_core::{
    Action, EffectOutput, EffectResult, GitterCall, GitterMessage, GitterRoom, GitterUser, Secret,
};

use crate::client::GitterClient;
use crate::error::{GitterError, scrub};
use crate::models::Message;

/// How many messages a reconciling send reads per page (the most Gitter gives).
const RECONCILE_PAGE: u32 = 100;
/// How many pages after the cursor it reads at most: a send is reconciled soon after it
/// went out, so its message is among the first few hundred after the newest message the
/// bridge had seen; the bound keeps a busy room from paging for ever. A read that is still
/// full at the bound fails (transient) rather than answer "not found" from a partial view,
/// which would post the message twice.
const RECONCILE_PAGES: usize = 50;

impl GitterClient {
    /// Executes a Gitter action: an [`Action::OAuth`] code exchange or an [`Action::Gitter`]
    /// REST call. Transient faults have been retried by the time this returns.
    ///
    /// Stream control belongs to [`crate::StreamManager`] and Matrix calls to the Matrix
    /// adapter: handing them here is a wiring bug, answered with a `Rejected` failure.
    pub async fn execute(&self, action: &Action) -> EffectResult {
        let secret = action.secret();
        match self.run(action).await {
            Ok(output) => Ok(output),
            Err(error) => {
                let kind = error.kind();
                let blame = error.blame();
                let mut failure = error.into_failure(secret);
                failure.message = scrub(&failure.message, &self.config().oauth.client_secret);
                tracing::warn!(
                    action = action.name(),
                    ?kind,
                    ?blame,
                    error = %failure.message,
                    "Gitter action failed"
                );
                Err(failure)
            }
        }
    }

    async fn run(&self, action: &Action) -> Result<EffectOutput, GitterError> {
        let (token, call) = match action {
            Action::OAuth { code } => {
                let token = self.oauth().exchange_code(code).await?;
                return Ok(EffectOutput::Token(token));
            }
            Action::Gitter { token, call } => (token, call),
            other => {
                return Err(GitterError::Config(format!(
                    "{} is not a Gitter REST call",
                    other.name()
                )));
            }
        };
        match call {
            GitterCall::CurrentUser => {
                let user = self.current_user(token).await?;
                Ok(EffectOutput::GitterUser(GitterUser::from(user)))
            }
            GitterCall::ListRooms => {
                let rooms = self.rooms(token, None).await?;
                Ok(EffectOutput::GitterRooms(
                    rooms.into_iter().map(GitterRoom::from).collect(),
                ))
            }
            GitterCall::ResolveRoom { uri } => {
                let room = self.resolve_room(token, uri).await?;
                Ok(EffectOutput::GitterRoom(room.into()))
            }
            GitterCall::JoinRoom { gitter_user, room } => {
                let room = self
                    .join_room(token, gitter_user.as_str(), room.as_str())
                    .await?;
                Ok(EffectOutput::GitterRoom(room.into()))
            }
            GitterCall::LeaveRoom { gitter_user, room } => {
                self.leave_room(token, room.as_str(), gitter_user.as_str())
                    .await?;
                Ok(EffectOutput::Done)
            }
            GitterCall::RoomMembers { room } => {
                let users = self.room_members(token, room.as_str()).await?;
                Ok(EffectOutput::GitterUsers(
                    users.into_iter().map(GitterUser::from).collect(),
                ))
            }
            GitterCall::FetchMessages { room, after, limit } => {
                // Without a cursor, no `afterId`: the server then gives the newest `limit`.
                let after = after.as_ref().map(|a| a.as_str());
                let page = self
                    .messages(token, room.as_str(), after, None, *limit)
                    .await?;
                let messages = page
                    .into_iter()
                    .filter_map(|m| {
                        let id = m.id.clone();
                        let converted = m.into_core();
                        if converted.is_none() {
                            tracing::warn!(
                                message = id,
                                "skipping a Gitter message without author"
                            );
                        }
                        converted
                    })
                    .collect();
                Ok(EffectOutput::GitterMessages(messages))
            }
            GitterCall::SendMessage {
                gitter_user,
                room,
                text,
                status,
                reconcile,
                after,
                parent,
            } => {
                if *reconcile {
                    // A Gitter POST has no idempotency key: a send whose outcome is unknown
                    // is looked for before it is posted again. This only reads; the core
                    // decides which message, if any, is this send.
                    let read = self
                        .messages_after(token, room.as_str(), after.as_ref())
                        .await?;
                    let newest = read
                        .last()
                        .map(|m| gitter_bridge_core::GitterMessageId::new(m.id.clone()));
                    let mine = read
                        .into_iter()
                        .filter(|m| m.from_user_id() == gitter_user.as_str())
                        .filter_map(Message::into_core)
                        .collect();
                    return Ok(EffectOutput::Reconciled { mine, newest });
                }
                let sent = self
                    .send_message(
                        token,
                        room.as_str(),
                        text,
                        *status,
                        parent.as_ref().map(|p| p.as_str()),
                    )
                    .await?;
                into_core(sent).map(EffectOutput::GitterMessage)
            }
            GitterCall::EditMessage { room, id, text } => {
                self.edit_message(token, room.as_str(), id.as_str(), text)
                    .await?;
                Ok(EffectOutput::Done)
            }
            GitterCall::DeleteMessage { room, id } => {
                self.delete_message(token, room.as_str(), id.as_str())
                    .await?;
                Ok(EffectOutput::Done)
            }
        }
    }
}

impl GitterClient {
    /// The room's messages after `after`, oldest first, paging on while pages are full (at
    /// most [`RECONCILE_PAGES`]); without `after`, the newest page.
    async fn messages_after(
        &self,
        token: &Secret,
        room: &str,
        after: Option<&gitter_bridge_core::GitterMessageId>,
    ) -> Result<Vec<Message>, GitterError> {
        let Some(after) = after else {
            return self.messages(token, room, None, None, RECONCILE_PAGE).await;
        };
        let mut all = Vec::new();
        let mut cursor = after.as_str().to_owned();
        for _ in 0..RECONCILE_PAGES {
            let page = self
                .messages(token, room, Some(&cursor), None, RECONCILE_PAGE)
                .await?;
            let full = page.len() >= RECONCILE_PAGE as usize;
            let Some(last) = page.last().map(|m| m.id.clone()) else {
                return Ok(all);
            };
            all.extend(page);
            if !full {
                return Ok(all);
            }
            cursor = last;
        }
        Err(GitterError::Incomplete(format!(
            "more than {} messages after the send's cursor: the reconcile cannot see the end \
             of the room yet",
            RECONCILE_PAGES * RECONCILE_PAGE as usize
        )))
    }
}

fn into_core(m: Message) -> Result<GitterMessage, GitterError> {
    m.into_core()
        .ok_or_else(|| GitterError::Decode("message without id or author".to_owned()))
}
