//! Execution of the core's Matrix calls ([`Action::Matrix`]).

use gitter_bridge_core::{
    Action, Effect, EffectId, EffectOutput, EffectResult, MatrixCall, NewPortal, RoomState,
};

use crate::client::{MatrixClient, image_content, replacement_content};
use crate::error::MatrixError;

impl MatrixClient {
    /// Executes a Matrix effect and classifies the outcome for the core
    /// ([`gitter_bridge_core::Input::EffectDone`]). Transient faults were already retried.
    pub async fn execute_effect(&self, effect: &Effect) -> EffectResult {
        self.execute(effect.id, &effect.action).await
    }

    /// Executes the Matrix action of effect `id` (the id gives a send its transaction id,
    /// [`EffectId::matrix_txn_id`], so a re-issued send after a crash is deduplicated by the
    /// homeserver). A fatal [`MatrixError`] (bad as_token) is reported as a transient
    /// failure here; use [`Self::try_execute`] to tell it apart and stop the bridge.
    pub async fn execute(&self, id: EffectId, action: &Action) -> EffectResult {
        self.try_execute(id, action).await.map_err(|e| {
            tracing::warn!(effect = %id, action = action.name(), error = %e, "Matrix effect failed");
            e.to_failure()
        })
    }

    /// Like [`Self::execute`], with the adapter's own error.
    pub async fn try_execute(
        &self,
        id: EffectId,
        action: &Action,
    ) -> Result<EffectOutput, MatrixError> {
        let Action::Matrix(call) = action else {
            return Err(MatrixError::Misuse(format!(
                "{} is not a Matrix action",
                action.name()
            )));
        };
        match call {
            MatrixCall::RegisterGhost { user } => {
                self.register_ghost(user).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::SetDisplayName { user, name } => {
                self.set_display_name(user, name).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::CreatePortal(new) => {
                let room = self.create_room(new).await?;
                Ok(EffectOutput::RoomCreated(room))
            }
            MatrixCall::CreateRoom {
                creator,
                name,
                topic,
                invite,
                power_users,
                alias,
            } => {
                // Stored before CreatePortal: the same room, without the m.bridge state.
                let new = NewPortal {
                    creator: creator.clone(),
                    name: name.clone(),
                    topic: topic.clone(),
                    invite: invite.clone(),
                    power_users: power_users.clone(),
                    alias: alias.clone(),
                    is_direct: false,
                    bridge: None,
                };
                let room = self.create_room(&new).await?;
                Ok(EffectOutput::RoomCreated(room))
            }
            MatrixCall::DeleteAlias { alias } => {
                self.delete_alias(alias).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::Invite {
                room,
                sender,
                target,
            } => {
                self.invite(room, sender, target).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::Join { room, user } => {
                self.join(room, user).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::Leave { room, user } => {
                self.leave(room, user, None).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::LeaveWithReason { room, user, reason } => {
                self.leave(room, user, Some(reason)).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::Kick {
                room,
                sender,
                target,
                reason,
            } => {
                self.kick(room, sender, target, reason).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::SendMessage {
                room,
                sender,
                content,
                ts,
            } => {
                let event = self
                    .send_message(room, sender, &id.matrix_txn_id(), content, ts.map(|t| t.0))
                    .await?;
                Ok(EffectOutput::EventSent(event))
            }
            MatrixCall::Replace {
                room,
                sender,
                target,
                content,
            } => {
                let event = self
                    .send_event(
                        room,
                        sender,
                        "m.room.message",
                        &id.matrix_txn_id(),
                        &replacement_content(target, content),
                        None,
                    )
                    .await?;
                Ok(EffectOutput::EventSent(event))
            }
            MatrixCall::Redact {
                room,
                sender,
                target,
                reason,
            } => {
                let event = self
                    .redact(room, sender, target, &id.matrix_txn_id(), reason.as_deref())
                    .await?;
                Ok(EffectOutput::EventSent(event))
            }
            MatrixCall::SetRoomState {
                room,
                sender,
                state,
            } => {
                let (event_type, content) = match state {
                    RoomState::Name(name) => ("m.room.name", serde_json::json!({ "name": name })),
                    RoomState::Avatar(mxc) => ("m.room.avatar", serde_json::json!({ "url": mxc })),
                    RoomState::Topic(topic) => {
                        ("m.room.topic", serde_json::json!({ "topic": topic }))
                    }
                };
                self.put_state(room, sender, event_type, "", &content)
                    .await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::MirrorMedia { url, name } => {
                Ok(EffectOutput::Uploaded(self.mirror_media(url, name).await?))
            }
            MatrixCall::SendImage {
                room,
                sender,
                image,
                ts,
            } => {
                let event = self
                    .send_event(
                        room,
                        sender,
                        "m.room.message",
                        &id.matrix_txn_id(),
                        &image_content(image),
                        ts.map(|t| t.0),
                    )
                    .await?;
                Ok(EffectOutput::EventSent(event))
            }
            MatrixCall::SetAvatar { user, mxc } => {
                self.set_avatar_url(user, mxc).await?;
                Ok(EffectOutput::Done)
            }
            MatrixCall::RoomMembers { room } => {
                // Listed as the bot: it is the one that was invited or created the room.
                let members = self.room_members(room, self.bot()).await?;
                Ok(EffectOutput::MatrixMembers(members))
            }
        }
    }
}
