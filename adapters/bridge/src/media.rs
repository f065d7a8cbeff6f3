//! The media page: `GET /media/{signature}/{server}/{media id}/{name}` on the public listener
//! serves a Matrix file to Gitter users, who have no Matrix account (the core's `media`
//! module writes the links).
//!
//! * Only a link the bridge signed is served (`403` otherwise), so the page is no proxy to
//!   the homeserver's other files.
//! * The file is fetched as the bot from the authenticated media API and streamed through,
//!   never held whole: at most [`MAX_DOWNLOADS`] at once, each cut at `web.media_max_bytes`
//!   (by its `Content-Length` at once, or when the stream grows past it) and at
//!   [`TIME_LIMIT`] in all (a client that stops reading gives its place back then, though its
//!   connection stays until the listener's own limits close it).
//! * The listener is the login pages' origin, so nothing served may run there: only raster
//!   images are shown inline, everything else (SVG and HTML included) is an attachment, and
//!   every answer carries `X-Content-Type-Options: nosniff` and a sandboxing
//!   `Content-Security-Policy`.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::StreamExt;
use gitter_bridge_core::{MediaKey, human_size};
use gitter_bridge_matrix::{MatrixClient, MatrixError};
use tokio::sync::Semaphore;

/// Downloads served at once; more are told to try again (`503`).
pub(crate) const MAX_DOWNLOADS: usize = 16;
/// Longest time one download may take, body included.
pub(crate) const TIME_LIMIT: Duration = Duration::from_secs(10 * 60);

/// Content types shown in the browser rather than saved: raster images, which cannot carry
/// script (SVG can, so it is an attachment).
const INLINE_TYPES: [&str; 5] = [
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/avif",
];

/// What the page needs.
#[derive(Clone)]
pub(crate) struct MediaPage {
    pub(crate) key: MediaKey,
    pub(crate) max_bytes: u64,
    pub(crate) matrix: MatrixClient,
    pub(crate) downloads: Arc<Semaphore>,
}

pub(crate) fn router(page: MediaPage) -> Router {
    Router::new()
        .route("/media/{signature}/{server}/{id}/{name}", get(serve))
        .with_state(page)
}

async fn serve(
    State(page): State<MediaPage>,
    Path((signature, server, id, name)): Path<(String, String, String, String)>,
) -> Response {
    if !page.key.verify(&signature, &server, &id, &name) {
        return refuse(StatusCode::FORBIDDEN, "This link is not valid.");
    }
    let Ok(permit) = page.downloads.clone().try_acquire_owned() else {
        return refuse(
            StatusCode::SERVICE_UNAVAILABLE,
            "The bridge is serving many files right now. Please try again in a minute.",
        );
    };
    let upstream = match page.matrix.download_media(&server, &id, TIME_LIMIT).await {
        Ok(upstream) => upstream,
        Err(MatrixError::Refused { status: 404, .. }) => {
            return refuse(
                StatusCode::NOT_FOUND,
                "This file is no longer on the Matrix server.",
            );
        }
        Err(e) => {
            tracing::warn!(error = %e, "a file for the media page could not be fetched");
            return refuse(
                StatusCode::BAD_GATEWAY,
                "The file could not be fetched from the Matrix server. Please try again later.",
            );
        }
    };
    let too_large = || {
        refuse(
            StatusCode::BAD_GATEWAY,
            &format!(
                "This file is larger than the bridge shares ({}).",
                human_size(page.max_bytes)
            ),
        )
    };
    let length = upstream.content_length();
    if length.is_some_and(|n| n > page.max_bytes) {
        return too_large();
    }
    let content_type = upstream
        .headers()
        .get(header::CONTENT_TYPE)
        .cloned()
        .unwrap_or_else(|| HeaderValue::from_static("application/octet-stream"));
    let max = page.max_bytes;
    let mut sent = 0u64;
    // The permit is held while the body streams, and at most TIME_LIMIT: a client that stops
    // reading leaves the stream unpolled (so no limit inside it would fire), and must not
    // keep a download's place for ever.
    let (streaming, done) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        let _permit = permit;
        let _ = tokio::time::timeout(TIME_LIMIT, done).await;
    });
    let body = upstream.bytes_stream().map(move |chunk| {
        let _streaming = &streaming;
        let chunk = chunk.map_err(std::io::Error::other)?;
        sent += chunk.len() as u64;
        if sent > max {
            // Past the cap with no length given: the answer is cut, and the client sees
            // an incomplete transfer rather than a file that is silently short.
            return Err(std::io::Error::other(
                "file larger than web.media_max_bytes",
            ));
        }
        Ok(chunk)
    });
    let mut response = Response::new(Body::from_stream(body));
    let h = response.headers_mut();
    if let Some(n) = length {
        h.insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    h.insert(
        header::CONTENT_DISPOSITION,
        disposition(&name, inline(&content_type)),
    );
    h.insert(header::CONTENT_TYPE, content_type);
    h.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=86400"),
    );
    guard(h);
    response
}

/// Whether a content type is shown in the browser (parameters ignored).
fn inline(content_type: &HeaderValue) -> bool {
    let essence = content_type
        .to_str()
        .unwrap_or_default()
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    INLINE_TYPES.contains(&essence.as_str())
}

/// `Content-Disposition` (RFC 6266): the name as UTF-8 (`filename*`, RFC 8187) and as a
/// plain-ASCII fallback for old clients.
fn disposition(name: &str, inline: bool) -> HeaderValue {
    let fallback: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ' {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = gitter_bridge_matrix::encode_segment(name);
    let kind = if inline { "inline" } else { "attachment" };
    HeaderValue::from_str(&format!(
        "{kind}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"
    ))
    .unwrap_or_else(|_| HeaderValue::from_static("attachment"))
}

/// The headers every answer of the page carries: nothing it serves is sniffed into
/// something else, runs script, or tells the file's host where the link was.
fn guard(h: &mut HeaderMap) {
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox; default-src 'none'; img-src 'self'"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
}

/// A plain-text refusal a person can read.
fn refuse(status: StatusCode, text: &str) -> Response {
    let mut response = (status, text.to_owned()).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    guard(h);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_raster_images_are_shown_inline() {
        for (ct, shown) in [
            ("image/png", true),
            ("IMAGE/JPEG; charset=binary", true),
            ("image/svg+xml", false),
            ("text/html", false),
            ("application/pdf", false),
        ] {
            assert_eq!(inline(&HeaderValue::from_static(ct)), shown, "{ct}");
        }
    }

    #[test]
    fn a_disposition_names_the_file_in_utf8_and_in_ascii() {
        let h = disposition("résumé \"final\".pdf", false);
        assert_eq!(
            h.to_str().unwrap(),
            "attachment; filename=\"r_sum_ _final_.pdf\"; \
             filename*=UTF-8''r%C3%A9sum%C3%A9%20%22final%22.pdf"
        );
        assert!(
            disposition("cat.png", true)
                .to_str()
                .unwrap()
                .starts_with("inline;")
        );
    }
}
