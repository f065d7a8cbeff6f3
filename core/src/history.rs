//! History: a new portal starts with its Gitter room's last messages
//! (`Config::backfill_messages`), in order, before any live one.
//!
//! The read (`chatMessages?limit=N`, newest N, oldest first) goes into the portal's lane
//! *before* its createRoom, so its answer is always handled while the portal is still being
//! created: live messages that came meanwhile wait in the portal's queue, and the history is
//! put in front of them there. Nothing appears twice: a message already queued or mapped for
//! the portal (it came live during the read) keeps its one place, exactly as a live
//! message's second delivery is skipped by its mapping. The read is not durable: when it
//! fails, the portal starts without its past and says so, rather than not at all.

use crate::bridge::Bridge;
use crate::effect::{Action, Answer, GitterCall, Lane, PortalThen, Then};
use crate::ids::{GitterRoomId, OwnedUserId};
use crate::input::{EffectOutput, GitterMessage};
use crate::state::PortalState;

impl Bridge {
    /// Asks for the history of a portal about to be created (in its lane, before the
    /// creation). Nothing when backfill is off or the owner has no valid login.
    pub(crate) fn ask_history(&mut self, owner: &OwnedUserId, room: &GitterRoomId, lane: &Lane) {
        let limit = self.config.backfill_messages;
        if limit == 0 {
            return;
        }
        let Some(login) = self.valid_login(owner) else {
            return;
        };
        self.ask(
            lane.clone(),
            Action::Gitter {
                token: login.token,
                call: GitterCall::FetchMessages {
                    room: room.clone(),
                    after: None,
                    limit,
                },
            },
            Then::Portal(PortalThen::History {
                owner: owner.clone(),
                room: room.clone(),
            }),
        );
    }

    /// The history of a portal being created has been read.
    pub(crate) fn on_history(&mut self, owner: OwnedUserId, room: GitterRoomId, answer: Answer) {
        let creating = self
            .state
            .portals
            .get(&(owner.clone(), room.clone()))
            .is_some_and(|p| p.state == PortalState::Creating && p.room_id.is_none());
        if !creating {
            // Closed meanwhile (a leave, a logout): nothing to fill.
            return;
        }
        let messages = match answer.result {
            Ok(EffectOutput::GitterMessages(messages)) => messages,
            Ok(got) => return self.unexpected(answer.id, answer.name, &got),
            Err(_) => {
                // The warning names the failure; the portal opens anyway.
                let label = self.room_label(&room);
                self.notice(
                    &owner,
                    format!(
                        "I could not read the recent messages of {label} from Gitter, so its \
                         room starts empty. New messages will arrive as usual."
                    ),
                );
                return;
            }
        };
        // What came live during the read waits in the queue. The history goes first, in
        // Gitter's order, each message once: one that also came live keeps its place in the
        // history (a later one may not have reached the stream yet), and the live ones the
        // read did not see follow.
        let mut live = self.take_queued(&owner, &room);
        for message in messages {
            if let Some(pos) = live.iter().position(|m| m.id == message.id) {
                let queued = live.remove(pos);
                self.queue_for_portal(&owner, &room, &queued);
            } else if let Some(message) = self.history_message(&owner, message) {
                self.queue_mapped(&owner, &room, &message);
            }
        }
        for message in live {
            self.queue_for_portal(&owner, &room, &message);
        }
    }

    /// A message of the history as the portal gets it: as edited since, and only if it was
    /// not bridged into this portal. A mapping without an event is no bridging: it is left
    /// from a try to create the portal that failed, whose queue was dropped.
    fn history_message(
        &mut self,
        owner: &OwnedUserId,
        message: GitterMessage,
    ) -> Option<GitterMessage> {
        let bridged = self
            .state
            .messages
            .get(owner, &message.id)
            .is_some_and(|m| m.event_id.is_some());
        if self.realtime.was_removed(&message.id) || bridged {
            return None;
        }
        let mut message = self
            .realtime
            .edited_version(&message.id)
            .cloned()
            .unwrap_or(message);
        // The past does not ping: fifty old mentions of the owner would each notify them.
        // The names stay in the text.
        message.mentions.clear();
        self.relay.saw_username(&message.from);
        Some(message)
    }
}
