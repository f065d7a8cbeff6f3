//! Images of Gitter messages, shown in Matrix.
//!
//! A Gitter image is a URL on the web (`![alt](https://...)`), which Matrix clients do not
//! load: only `mxc://` images are shown (spec: "m.room.message msgtypes", `img`). So the
//! message's text comes first, as ever, with each image as a link (the sanitiser makes it
//! one, `crate::format`); then each image is downloaded, uploaded to the homeserver
//! ([`MatrixCall::MirrorMedia`]) and sent after the text as an `m.image` from the same ghost,
//! in the same thread, at the same Gitter time. The upload goes on as the send of the image
//! (`Bridge::continue_as`), so the portal's later messages wait behind it and keep their
//! order. A download that fails for good leaves the link in the text: nothing is lost.
//!
//! A URL uploaded once is remembered (the last [`REMEMBERED`] of them, in memory): the same
//! image in another portal, or posted again, is not downloaded again.

use std::collections::{HashMap, VecDeque};

use crate::bridge::Bridge;
use crate::effect::{
    Action, Answer, ImageMessage, Lane, MatrixCall, PendingImage, RelayThen, Then, ThreadRef,
    Uploaded,
};
use crate::ids::{OwnedRoomId, OwnedUserId, Timestamp};
use crate::input::{EffectOutput, GitterMessage};

/// How many uploaded URLs are remembered.
const REMEMBERED: usize = 1024;

/// Uploads by URL, the newest [`REMEMBERED`].
#[derive(Clone, Debug, Default)]
pub(crate) struct Uploads {
    by_url: HashMap<String, Uploaded>,
    order: VecDeque<String>,
}

impl Uploads {
    fn get(&self, url: &str) -> Option<&Uploaded> {
        self.by_url.get(url)
    }

    fn remember(&mut self, url: String, uploaded: Uploaded) {
        if self.by_url.insert(url.clone(), uploaded).is_none() {
            self.order.push_back(url);
            if self.order.len() > REMEMBERED
                && let Some(oldest) = self.order.pop_front()
            {
                self.by_url.remove(&oldest);
            }
        }
    }
}

impl Bridge {
    /// Sends the web images of a Gitter message into a portal, after its text (emitted just
    /// before, in the same lane).
    pub(crate) fn send_images(
        &mut self,
        lane: &Lane,
        room: &OwnedRoomId,
        sender: &OwnedUserId,
        message: &GitterMessage,
        thread: Option<ThreadRef>,
        ts: Option<Timestamp>,
    ) {
        for image in crate::format::web_images(message) {
            let name = image
                .alt
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| file_name(&image.url));
            let pending = PendingImage {
                room: room.clone(),
                sender: sender.clone(),
                url: image.url,
                name,
                thread: thread.clone(),
                ts,
            };
            match self.images.get(&pending.url).cloned() {
                Some(uploaded) => {
                    self.emit(lane.clone(), send_image(pending, uploaded));
                }
                None => {
                    self.ask(
                        lane.clone(),
                        Action::Matrix(MatrixCall::MirrorMedia {
                            url: pending.url.clone(),
                            name: pending.name.clone(),
                        }),
                        Then::Relay(RelayThen::Image(Box::new(pending))),
                    );
                }
            }
        }
    }

    /// An image's upload is done (or failed for good: its link is in the text already).
    pub(crate) fn on_image_uploaded(&mut self, pending: PendingImage, answer: Answer) {
        match answer.result {
            Ok(EffectOutput::Uploaded(uploaded)) => {
                self.images.remember(pending.url.clone(), uploaded.clone());
                self.continue_as(
                    answer.id,
                    answer.lane,
                    send_image(pending, uploaded),
                    Then::Nothing,
                );
            }
            Ok(got) => self.unexpected(answer.id, answer.name, &got),
            // The warning says why; the text's link stands for the image.
            Err(_) => {}
        }
    }
}

fn send_image(pending: PendingImage, uploaded: Uploaded) -> Action {
    Action::Matrix(MatrixCall::SendImage {
        room: pending.room,
        sender: pending.sender,
        image: ImageMessage {
            name: pending.name,
            mxc: uploaded.mxc,
            mimetype: uploaded.content_type,
            size: uploaded.size,
            thread: pending.thread,
        },
        ts: pending.ts,
    })
}

/// The last path segment of a URL, as a file name (`image` when it has none).
fn file_name(url: &str) -> String {
    let path = url.split(['?', '#']).next().unwrap_or_default();
    let last = path.rsplit('/').next().unwrap_or_default();
    let scheme_only = path.ends_with(':') || path.matches('/').count() <= 2;
    if last.is_empty() || scheme_only {
        "image".to_owned()
    } else {
        last.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::file_name;

    #[test]
    fn an_image_without_alt_text_is_named_after_its_url() {
        assert_eq!(file_name("https://h.example/a/cat.png?s=60"), "cat.png");
        assert_eq!(file_name("https://h.example/"), "image");
        assert_eq!(file_name("https://h.example"), "image");
    }
}
