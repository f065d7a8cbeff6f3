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
use crate::format::WebImage;
use crate::ids::{OwnedRoomId, OwnedUserId, Timestamp};
use crate::input::EffectOutput;

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
        images: &[WebImage],
        thread: Option<ThreadRef>,
        ts: Option<Timestamp>,
    ) {
        for image in images {
            let name = image
                .alt
                .clone()
                .filter(|a| !a.trim().is_empty())
                .unwrap_or_else(|| file_name(&image.url));
            let pending = PendingImage {
                room: room.clone(),
                sender: sender.clone(),
                url: image.url.clone(),
                name,
                thread: thread.clone(),
                ts,
            };
            let own = self
                .config
                .media_key
                .as_ref()
                .and_then(|key| own_media(&pending.url, &self.config.public_url, key));
            if let Some(mxc) = own {
                self.emit(lane.clone(), send_image(pending, mxc, None, None));
                continue;
            }
            match self.images.get(&pending.url).cloned() {
                Some(uploaded) => {
                    self.emit(lane.clone(), send_uploaded(pending, uploaded));
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
                    send_uploaded(pending, uploaded),
                    Then::Nothing,
                );
            }
            Ok(got) => self.unexpected(answer.id, answer.name, &got),
            // The warning says why; the text's link stands for the image.
            Err(_) => {}
        }
    }
}

fn send_uploaded(pending: PendingImage, uploaded: Uploaded) -> Action {
    send_image(
        pending,
        uploaded.mxc,
        Some(uploaded.content_type),
        Some(uploaded.size),
    )
}

fn send_image(
    pending: PendingImage,
    mxc: String,
    mimetype: Option<String>,
    size: Option<u64>,
) -> Action {
    Action::Matrix(MatrixCall::SendImage {
        room: pending.room,
        sender: pending.sender,
        image: ImageMessage {
            name: pending.name,
            mxc,
            mimetype,
            size,
            thread: pending.thread,
        },
        ts: pending.ts,
    })
}

/// The `mxc://` URI behind a link to this bridge's own media page (a Matrix file sent to
/// Gitter, seen again in another portal of the room): the homeserver has the file already,
/// and fetching it through the page would only spend the page's permits.
fn own_media(url: &str, public_url: &str, key: &crate::MediaKey) -> Option<String> {
    let rest = url
        .strip_prefix(public_url.trim_end_matches('/'))?
        .strip_prefix("/media/")?;
    let decode = |s: &str| {
        percent_encoding::percent_decode_str(s)
            .decode_utf8()
            .ok()
            .map(|d| d.into_owned())
    };
    let mut parts = rest.split('/');
    let signature = parts.next()?;
    let server = decode(parts.next()?)?;
    let media_id = decode(parts.next()?)?;
    let name = decode(parts.next()?)?;
    if parts.next().is_some() || !key.verify(signature, &server, &media_id, &name) {
        return None;
    }
    Some(format!("mxc://{server}/{media_id}"))
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
    use super::{file_name, own_media};

    #[test]
    fn a_link_to_the_bridges_own_media_page_names_its_file() {
        let key = crate::MediaKey::derive(b"k");
        let path = crate::media_path(&key, "hs.example", "AbC", "a b.png");
        let url = format!("https://bridge.example{path}");
        assert_eq!(
            own_media(&url, "https://bridge.example/", &key).as_deref(),
            Some("mxc://hs.example/AbC")
        );
        let tampered = url.replace("AbC", "AbD");
        assert_eq!(own_media(&tampered, "https://bridge.example", &key), None);
        assert_eq!(own_media(&url, "https://other.example", &key), None);
    }

    #[test]
    fn an_image_without_alt_text_is_named_after_its_url() {
        assert_eq!(file_name("https://h.example/a/cat.png?s=60"), "cat.png");
        assert_eq!(file_name("https://h.example/"), "image");
        assert_eq!(file_name("https://h.example"), "image");
    }
}
