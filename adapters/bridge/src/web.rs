//! The public pages: `/` (what this is), `/login/{token}` (a login link from the bot),
//! `/oauth/callback` (Gitter's redirect) and `/health`; and [`metrics_router`], the
//! Prometheus `/metrics`, which the runtime serves on the private AS listener.
//!
//! The pages run on their own listener, apart from the AS API, so the homeserver-only
//! endpoints (and the operational data of `/metrics`) are never exposed with them. Every text is HTML-escaped; the login token and the OAuth code
//! travel in URLs, so pages are sent with `Referrer-Policy: no-referrer` and `no-store`, and no
//! request line is ever logged.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use gitter_bridge_core::{Secret, WebReply};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::Metrics;

/// A request the driver must answer through the core.
#[derive(Debug)]
pub(crate) struct WebRequest {
    pub(crate) kind: WebKind,
    pub(crate) reply: oneshot::Sender<WebReply>,
}

/// What was asked.
#[derive(Debug)]
pub(crate) enum WebKind {
    /// `GET /login/{token}`.
    LoginLink { token: String },
    /// `GET /oauth/callback?code&state&error`.
    OAuthCallback {
        code: Option<Secret>,
        state: Option<String>,
        error: Option<String>,
    },
}

/// What the pages need.
#[derive(Clone)]
pub(crate) struct WebState {
    pub(crate) requests: mpsc::Sender<WebRequest>,
    pub(crate) bot: String,
    pub(crate) answer_timeout: Duration,
}

/// What `/metrics` reads.
#[derive(Clone)]
pub(crate) struct MetricsState {
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) rate_limit_waits: Arc<dyn Fn() -> u64 + Send + Sync>,
}

pub(crate) fn router(state: WebState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login/{token}", get(login_link))
        .route("/oauth/callback", get(oauth_callback))
        .route("/health", get(health))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /metrics`, to merge into a private listener's router.
pub(crate) fn metrics_router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Escapes text for HTML element content and attribute values.
pub(crate) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, paragraphs: &[&str]) -> Response {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>\n", escape(p)))
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;\
         line-height:1.5}}</style></head>\n<body>\n<h1>{title}</h1>\n{body}</body></html>\n",
        title = escape(title),
    );
    secure(
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
    )
}

/// Headers for pages whose URLs carry one-time secrets.
fn secure(mut response: Response) -> Response {
    let h = response.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'"),
    );
    response
}

fn render(reply: WebReply) -> Response {
    match reply {
        WebReply::Redirect(url) => match HeaderValue::from_str(&url) {
            Ok(location) => secure(
                (
                    StatusCode::FOUND,
                    [(header::LOCATION, location)],
                    "Redirecting to Gitter",
                )
                    .into_response(),
            ),
            Err(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login failed",
                &["The bridge built an invalid sign-in address. Please tell the operator."],
            ),
        },
        WebReply::Page {
            status,
            title,
            message,
        } => page(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &title,
            &[&message],
        ),
    }
}

async fn ask(state: &WebState, kind: WebKind) -> Response {
    let (reply, answer) = oneshot::channel();
    let unavailable = || {
        page(
            StatusCode::SERVICE_UNAVAILABLE,
            "Bridge unavailable",
            &["The bridge is starting or stopping. Please open the link again in a minute."],
        )
    };
    // One deadline for the queue and the answer: a busy driver must not hold the visitor
    // forever.
    let deadline = tokio::time::Instant::now() + state.answer_timeout;
    match tokio::time::timeout_at(deadline, state.requests.send(WebRequest { kind, reply })).await {
        Ok(Ok(())) => {}
        Ok(Err(_)) => return unavailable(),
        Err(_) => return still_working(),
    }
    match tokio::time::timeout_at(deadline, answer).await {
        Ok(Ok(reply)) => render(reply),
        Ok(Err(_)) => unavailable(),
        Err(_) => still_working(),
    }
}

fn still_working() -> Response {
    page(
        StatusCode::GATEWAY_TIMEOUT,
        "Still working",
        &[
            "Gitter is answering slowly. If the bot does not confirm your login soon, ask it \
             for a new login link.",
        ],
    )
}

async fn index(State(state): State<WebState>) -> Response {
    page(
        StatusCode::OK,
        "Gitter bridge",
        &[
            "This server bridges Gitter rooms into Matrix: you chat in your Gitter rooms from \
             your Matrix client, as your own Gitter user.",
            &format!(
                "To start, send a direct message to {} from your Matrix account. It answers with \
                 a login link; follow it to sign in to Gitter. Send it \"help\" for the commands.",
                state.bot
            ),
        ],
    )
}

async fn login_link(State(state): State<WebState>, Path(token): Path<String>) -> Response {
    ask(&state, WebKind::LoginLink { token }).await
}

async fn oauth_callback(
    State(state): State<WebState>,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    let kind = WebKind::OAuthCallback {
        code: query.remove("code").map(Secret::new),
        state: query.remove("state"),
        error: query.remove("error"),
    };
    ask(&state, kind).await
}

async fn health(State(state): State<WebState>) -> Response {
    if state.requests.is_closed() {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            axum::Json(serde_json::json!({"status": "stopping"})),
        )
            .into_response()
    } else {
        axum::Json(serde_json::json!({"status": "ok"})).into_response()
    }
}

async fn metrics(State(state): State<MetricsState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        state.metrics.render((state.rate_limit_waits)()),
    )
        .into_response()
}

async fn not_found() -> Response {
    page(
        StatusCode::NOT_FOUND,
        "Not found",
        &["There is nothing here. Login links come from the bridge's bot in Matrix."],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
