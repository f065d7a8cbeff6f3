//! Edits and redactions of the portal owner's bridged messages, Matrix -> Gitter.
//!
//! An `m.replace` edit of a message the owner sent to Gitter edits it there (`PUT`, §3.8), a
//! redaction deletes it (`DELETE`, §3.9). The Gitter message is found through the message
//! mappings: the hot set first, then the store (a lookup on the portal's lane, so that it
//! runs after a send of the very message that may still be in flight). Gitter refuses edits
//! 10 minutes after `sent` (a 400): past that window the new text is posted as a correction
//! in the original's thread, and the owner is told once per portal and run. An edit or a
//! redaction whose target the bridge never bridged gets a notice and a warning; it is never
//! applied to another message.

use crate::bridge::Bridge;
use crate::effect::{
    Action, Answer, Correction, CorrectionKind, EditThen, GitterCall, Lane, RelayThen, SendOrigin,
    StoreCall, Then,
};
use crate::error::CoreError;
use crate::ids::{GitterMessageId, GitterRoomId, OwnedEventId, OwnedUserId};
use crate::input::FailureKind;
use crate::state::{MessageRecord, Origin};

/// Gitter's edit window (§3.8: 600 s after `sent`), less a margin for the two clocks and the
/// time the edit takes to get there: an edit older than this goes straight to a correction.
const EDIT_WINDOW_MS: u64 = 600_000 - 15_000;

/// What the owner is told, once per portal and run, when an edit becomes a correction.
pub(crate) const PAST_WINDOW: &str = "Gitter lets a message be edited for 10 minutes only: \
     your edit was posted as a correction in the thread of the message.";

impl Bridge {
    /// An edit or a redaction by the owner in their portal.
    pub(crate) fn on_portal_correction(&mut self, correction: Correction) {
        match self.hot_mapping_by_event(&correction.owner, &correction.room, &correction.target) {
            Some(mapping) => self.apply_correction(correction, mapping),
            None => {
                let lane = Lane::Portal {
                    owner: correction.owner.clone(),
                    room: correction.room.clone(),
                };
                self.ask(
                    lane,
                    Action::Store(StoreCall::MappingByEvent {
                        owner: correction.owner.clone(),
                        room: correction.room.clone(),
                        event_id: correction.target.clone(),
                    }),
                    Then::Edit(EditThen::Found(Box::new(correction))),
                );
            }
        }
    }

    /// The hot mapping of a Matrix event in a portal. A scan of the owner's hot mappings:
    /// edits come at the pace of a person, and an index by event would cost every relayed
    /// message.
    pub(crate) fn hot_mapping_by_event(
        &self,
        owner: &OwnedUserId,
        room: &GitterRoomId,
        event: &OwnedEventId,
    ) -> Option<MessageRecord> {
        self.state
            .messages
            .of_owner(owner)
            .find(|m| &m.gitter_room == room && m.event_id.as_ref() == Some(event))
            .cloned()
    }

    pub(crate) fn on_edit_answer(&mut self, then: EditThen, answer: Answer) {
        match then {
            EditThen::Found(correction) => {
                // The hot set first: a send still in flight when the edit came has completed
                // by now (the lookup waited behind it in the portal's lane), and its mapping
                // may not be committed to the store yet.
                let found = match self.hot_mapping_by_event(
                    &correction.owner,
                    &correction.room,
                    &correction.target,
                ) {
                    Some(m) => Some(m),
                    None => self.looked_up(&answer),
                };
                match found {
                    Some(mapping) => self.apply_correction(*correction, mapping),
                    None => self.correction_unmapped(&correction),
                }
            }
            EditThen::Edited {
                correction,
                gitter_id,
            } => match answer.result {
                Ok(_) => {}
                // A retry refused: an earlier try whose answer was lost may have made the
                // edit; a correction could say the same thing twice.
                Err(f) if f.kind == FailureKind::Rejected && answer.retried => {
                    self.tell_owner(
                        &correction,
                        "Gitter did not confirm your edit in time: check the message on Gitter.",
                    );
                }
                // Gitter's own clock says the window has passed (§3.8: 400).
                Err(f) if f.kind == FailureKind::Rejected => {
                    self.post_correction(*correction, gitter_id)
                }
                Err(f) => {
                    if f.kind != FailureKind::TokenRevoked {
                        self.tell_owner(
                            &correction,
                            format!("Your edit could not be made on Gitter: {}.", f.message),
                        );
                    }
                }
            },
            EditThen::Deleted(correction) => match answer.result {
                // Gone already is what was asked.
                Ok(_) => {}
                Err(f) if f.kind == FailureKind::NotFound => {}
                Err(f) => {
                    if f.kind != FailureKind::TokenRevoked {
                        self.tell_owner(
                            &correction,
                            format!(
                                "Your message could not be deleted on Gitter: {}.",
                                f.message
                            ),
                        );
                    }
                }
            },
        }
    }

    /// Edits or deletes the Gitter message of `mapping`.
    fn apply_correction(&mut self, correction: Correction, mapping: MessageRecord) {
        if mapping.origin != Origin::Matrix {
            // Matrix lets nobody edit another's message; an edit that names one is ignored
            // (spec: event replacements), never applied to the Gitter message of someone else.
            self.warn(CoreError::Ignored(format!(
                "{}: an edit or redaction of {}, which was not sent from Matrix",
                correction.event_id, correction.target
            )));
            return;
        }
        let Some(login) = self.valid_login(&correction.owner) else {
            // No link here: a portal is not kept private the way the chat with the bot is.
            self.tell_owner(
                &correction,
                "Your change was not made on Gitter: you are not logged in. Send `login` to the \
                 bridge bot.",
            );
            return;
        };
        let lane = Lane::Portal {
            owner: correction.owner.clone(),
            room: correction.room.clone(),
        };
        match &correction.what {
            CorrectionKind::Edit { .. } => {
                let Some(text) = self.correction_text(&correction, &login.username, "") else {
                    return;
                };
                if self.step.now.0.saturating_sub(mapping.at.0) > EDIT_WINDOW_MS {
                    self.post_correction(correction, mapping.gitter_id);
                    return;
                }
                self.ask(
                    lane,
                    Action::Gitter {
                        token: login.token,
                        call: GitterCall::EditMessage {
                            room: correction.room.clone(),
                            id: mapping.gitter_id.clone(),
                            text,
                        },
                    },
                    Then::Edit(EditThen::Edited {
                        correction: Box::new(correction),
                        gitter_id: mapping.gitter_id,
                    }),
                );
            }
            CorrectionKind::Redact => {
                self.realtime
                    .deleted_from_matrix(&correction.owner, &mapping.gitter_id);
                self.ask(
                    lane,
                    Action::Gitter {
                        token: login.token,
                        call: GitterCall::DeleteMessage {
                            room: correction.room.clone(),
                            id: mapping.gitter_id,
                        },
                    },
                    Then::Edit(EditThen::Deleted(Box::new(correction))),
                );
            }
        }
    }

    /// The Gitter text of an edit (`prefix` before it), or `None` after telling the owner
    /// why there is none (too long for Gitter, or empty).
    fn correction_text(
        &mut self,
        correction: &Correction,
        username: &str,
        prefix: &str,
    ) -> Option<String> {
        let CorrectionKind::Edit { body, status } = &correction.what else {
            return None;
        };
        let text = if *status {
            format!("{prefix}@{username} {body}")
        } else {
            format!("{prefix}{body}")
        };
        // Gitter counts UTF-16 code units (see the send path, relay.rs).
        let len = text.encode_utf16().count();
        if len > self.config.max_message_len {
            self.tell_owner(
                correction,
                format!(
                    "Your edit was not made on Gitter: it is {len} characters long and Gitter \
                     accepts at most {} (most emoji count as two).",
                    self.config.max_message_len
                ),
            );
            return None;
        }
        (!body.trim().is_empty()).then_some(text)
    }

    /// Posts an edit that Gitter no longer accepts as a correction in the thread of its
    /// message, as a new message of the owner (mapped to the edit's event).
    fn post_correction(&mut self, correction: Correction, parent: GitterMessageId) {
        let Some(login) = self.valid_login(&correction.owner) else {
            return;
        };
        let Some(text) = self.correction_text(&correction, &login.username, "Correction: ") else {
            return;
        };
        let status = matches!(correction.what, CorrectionKind::Edit { status: true, .. });
        let after = self.newest_seen(&correction.room);
        self.ask(
            Lane::Portal {
                owner: correction.owner.clone(),
                room: correction.room.clone(),
            },
            Action::Gitter {
                token: login.token,
                call: GitterCall::SendMessage {
                    gitter_user: login.gitter_id,
                    room: correction.room.clone(),
                    text,
                    status,
                    reconcile: false,
                    after,
                    parent: Some(parent),
                },
            },
            Then::Relay(RelayThen::ToGitter(SendOrigin {
                owner: correction.owner.clone(),
                room: correction.portal.clone(),
                event_id: correction.event_id.clone(),
            })),
        );
        if self
            .relay
            .first_past_window(&correction.owner, &correction.room)
        {
            self.tell_owner(&correction, PAST_WINDOW);
        }
    }

    /// The target was never bridged (or its mapping is past retention): nothing is changed
    /// on Gitter, and the owner and the log say why.
    fn correction_unmapped(&mut self, correction: &Correction) {
        self.warn(CoreError::Ignored(format!(
            "{}: the edited or redacted event {} has no Gitter message",
            correction.event_id, correction.target
        )));
        // A redaction of something never bridged is common and needs no word (a reaction
        // taken back, a bot notice removed); an edit that does not reach Gitter does.
        if let CorrectionKind::Edit { .. } = correction.what {
            self.tell_owner(
                correction,
                "Your edit was not made on Gitter: that message is not one the bridge sent \
                 there (or it is too old).",
            );
        }
    }

    /// A notice to the owner in the portal, in the lane of notices (the portal's lane may be
    /// held by the very effect it is about).
    fn tell_owner(&mut self, correction: &Correction, text: impl Into<String>) {
        self.notice_in(
            Lane::Notices(correction.owner.clone()),
            correction.portal.clone(),
            text,
        );
    }
}
