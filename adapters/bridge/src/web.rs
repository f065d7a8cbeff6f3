//! The public pages: `/` (what this is), `/login/{token}` (a login link from the bot: a GET
//! shows a page naming the Matrix account with one button, whose POST goes on to Gitter),
//! `/oauth/callback` (Gitter's redirect) and `/health`; and [`metrics_router`], the
//! Prometheus `/metrics`, which the runtime serves on the private AS listener.
//!
//! The pages run on their own listener, apart from the AS API, so the homeserver-only
//! endpoints (and the operational data of `/metrics`) are never exposed with them. Every text is HTML-escaped; the login token and the OAuth code
//! travel in URLs, so pages are sent with `Referrer-Policy: no-referrer` and `no-store`, and no
//! request line is ever logged.
//!
//! Two cookies tie a login to one browser. The confirm page sets `gb_csrf` (SameSite=Strict)
//! and carries the same value in its form: a POST is forwarded only when both agree, which
//! another site cannot arrange (double-submit; it can neither read nor send the cookie). The
//! redirect to Gitter sets `gb_oauth` to the OAuth state (SameSite=Lax, so it comes back on
//! Gitter's top-level redirect): the core accepts the callback only with its own browser's
//! state.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Form, http::HeaderMap};
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
    /// `POST /login/{token}` whose CSRF token matched the browser's cookie.
    LoginConfirm { token: String },
    /// `GET /oauth/callback?code&state&error`.
    OAuthCallback {
        code: Option<Secret>,
        state: Option<String>,
        error: Option<String>,
        /// The `gb_oauth` cookie.
        browser: Option<String>,
    },
}

/// The cookie of the confirm page's CSRF token.
const CSRF_COOKIE: &str = "gb_csrf";
/// The cookie of the OAuth state of the browser that confirmed.
const STATE_COOKIE: &str = "gb_oauth";

/// What the pages need.
#[derive(Clone)]
pub(crate) struct WebState {
    pub(crate) requests: mpsc::Sender<WebRequest>,
    pub(crate) bot: String,
    pub(crate) answer_timeout: Duration,
    /// Cookies get `Secure` (the public URL is https).
    pub(crate) secure_cookies: bool,
    /// How long the cookies live (the login link lifetime).
    pub(crate) cookie_max_age: Duration,
    /// Whether the homeserver and Gitter answer (`/ready`).
    pub(crate) reach: Arc<crate::ready::Reachability>,
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
        .route("/login/{token}", get(login_link).post(login_confirm))
        .route("/oauth/callback", get(oauth_callback))
        .route("/health", get(health))
        .route("/ready", get(ready))
        .fallback(not_found)
        .with_state(state)
}

/// `GET /metrics`, to merge into a private listener's router.
pub(crate) fn metrics_router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .with_state(state)
}

/// Escapes text for HTML element content and attribute values (the core's one helper).
pub(crate) use gitter_bridge_core::escape_html as escape;

fn page(status: StatusCode, title: &str, paragraphs: &[&str]) -> Response {
    html_page(status, title, paragraphs, "")
}

/// A page: escaped paragraphs, then `extra` HTML (already escaped by the caller).
fn html_page(status: StatusCode, title: &str, paragraphs: &[&str], extra: &str) -> Response {
    let body: String = paragraphs
        .iter()
        .map(|p| format!("<p>{}</p>\n", escape(p)))
        .collect();
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title}</title>\
         <style>body{{font-family:sans-serif;max-width:40em;margin:3em auto;padding:0 1em;\
         line-height:1.5}}</style></head>\n<body>\n<h1>{title}</h1>\n{body}{extra}</body></html>\n",
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
        HeaderValue::from_static(
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; \
             frame-ancestors 'none'",
        ),
    );
    response
}

fn render(state: &WebState, reply: WebReply) -> Response {
    match reply {
        WebReply::OAuthRedirect { url, state: oauth } => match HeaderValue::from_str(&url) {
            Ok(location) => {
                let mut response = secure(
                    (
                        StatusCode::FOUND,
                        [(header::LOCATION, location)],
                        "Redirecting to Gitter",
                    )
                        .into_response(),
                );
                set_cookie(&mut response, state, STATE_COOKIE, &oauth, "/oauth", "Lax");
                response
            }
            Err(_) => page(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Login failed",
                &["The bridge built an invalid sign-in address. Please tell the operator."],
            ),
        },
        WebReply::Confirm {
            title,
            message,
            button,
            csrf,
        } => {
            let form = format!(
                "<form method=\"post\"><input type=\"hidden\" name=\"csrf\" value=\"{}\">\
                 <button type=\"submit\">{}</button></form>\n",
                escape(&csrf),
                escape(&button)
            );
            let mut response = html_page(StatusCode::OK, &title, &[&message], &form);
            set_cookie(&mut response, state, CSRF_COOKIE, &csrf, "/login", "Strict");
            response
        }
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

/// Adds a `Set-Cookie` for one of the login cookies (HttpOnly: no script reads it).
fn set_cookie(
    response: &mut Response,
    state: &WebState,
    name: &str,
    value: &str,
    path: &str,
    same_site: &str,
) {
    let secure = if state.secure_cookies { "; Secure" } else { "" };
    let cookie = format!(
        "{name}={value}; Path={path}; Max-Age={}; HttpOnly; SameSite={same_site}{secure}",
        state.cookie_max_age.as_secs()
    );
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// The value of cookie `name` in the request, if any.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
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
        Ok(Ok(reply)) => render(state, reply),
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

/// The confirm page's form.
#[derive(serde::Deserialize)]
struct ConfirmForm {
    #[serde(default)]
    csrf: String,
}

async fn login_confirm(
    State(state): State<WebState>,
    Path(token): Path<String>,
    headers: HeaderMap,
    form: Result<Form<ConfirmForm>, axum::extract::rejection::FormRejection>,
) -> Response {
    let from_page = form.map(|Form(f)| f.csrf).unwrap_or_default();
    let from_browser = cookie(&headers, CSRF_COOKIE).unwrap_or_default();
    if from_page.is_empty() || !same_secret(&from_page, &from_browser) {
        // Not the page this browser was shown (another site's form, or cookies off).
        return page(
            StatusCode::FORBIDDEN,
            "Please confirm on the bridge's page",
            &[
                "This confirmation did not come from the page the bridge showed in this \
                 browser. Open the login link again and press the button there (the page \
                 needs cookies).",
            ],
        );
    }
    ask(&state, WebKind::LoginConfirm { token }).await
}

async fn oauth_callback(
    State(state): State<WebState>,
    headers: HeaderMap,
    Query(mut query): Query<HashMap<String, String>>,
) -> Response {
    let kind = WebKind::OAuthCallback {
        code: query.remove("code").map(Secret::new),
        state: query.remove("state"),
        error: query.remove("error"),
        browser: cookie(&headers, STATE_COOKIE),
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

/// `GET /ready`: 200 while the homeserver and Gitter answer, 503 naming the one that does not
/// (or while stopping): for a load balancer or an orchestrator that should hold traffic back
/// or alert, where `/health` only says the process runs.
async fn ready(State(state): State<WebState>) -> Response {
    let (ready, mut body) = state.reach.report();
    let stopping = state.requests.is_closed();
    if stopping {
        body["status"] = serde_json::json!("stopping");
    }
    let status = if ready && !stopping {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(body)).into_response()
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
    use axum::body::Body;
    use axum::http::Request;
    use tower::ServiceExt;

    use super::*;

    /// The pages, with a driver that answers like the core: a confirm page for a GET, a
    /// redirect to Gitter for a confirmed POST, the callback's `browser` echoed back.
    fn pages() -> Router {
        let (tx, mut rx) = mpsc::channel::<WebRequest>(8);
        tokio::spawn(async move {
            while let Some(req) = rx.recv().await {
                let reply = match req.kind {
                    WebKind::LoginLink { .. } => WebReply::Confirm {
                        title: "Link".into(),
                        message: "to @alice:example.org".into(),
                        button: "Link it".into(),
                        csrf: "c5rf".into(),
                    },
                    WebKind::LoginConfirm { .. } => WebReply::OAuthRedirect {
                        url: "https://gitter.example/authorize?state=st8".into(),
                        state: "st8".into(),
                    },
                    WebKind::OAuthCallback { browser, .. } => WebReply::Page {
                        status: 200,
                        title: "Callback".into(),
                        message: format!("browser {browser:?}"),
                    },
                };
                let _ = req.reply.send(reply);
            }
        });
        router(WebState {
            requests: tx,
            bot: "@gitterbot:example.org".into(),
            answer_timeout: Duration::from_secs(5),
            secure_cookies: true,
            cookie_max_age: Duration::from_secs(900),
            reach: Arc::default(),
        })
    }

    async fn body(r: Response) -> String {
        let bytes = axum::body::to_bytes(r.into_body(), 1 << 20).await.unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    fn confirm(cookie: Option<&str>, form: &str) -> Request<Body> {
        let mut r = Request::post("/login/tok")
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded");
        if let Some(c) = cookie {
            r = r.header(header::COOKIE, c);
        }
        r.body(Body::from(form.to_owned())).unwrap()
    }

    #[tokio::test]
    async fn a_link_shows_a_form_and_sets_a_strict_csrf_cookie() {
        let r = pages()
            .oneshot(Request::get("/login/tok").body(Body::empty()).unwrap())
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let cookie = r.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
        assert_eq!(
            cookie,
            "gb_csrf=c5rf; Path=/login; Max-Age=900; HttpOnly; SameSite=Strict; Secure"
        );
        let html = body(r).await;
        assert!(html.contains("<form method=\"post\">"), "{html}");
        assert!(html.contains("name=\"csrf\" value=\"c5rf\""), "{html}");
        assert!(html.contains("to @alice:example.org"));
    }

    #[tokio::test]
    async fn a_post_without_the_browsers_csrf_cookie_is_refused() {
        for (cookie, form) in [
            (None, "csrf=c5rf"),
            (Some("gb_csrf=other"), "csrf=c5rf"),
            (Some("gb_csrf=c5rf"), ""),
            (Some("gb_csrf="), "csrf="),
        ] {
            let r = pages().oneshot(confirm(cookie, form)).await.unwrap();
            assert_eq!(r.status(), StatusCode::FORBIDDEN, "{cookie:?} {form:?}");
        }
    }

    #[tokio::test]
    async fn a_confirmed_post_redirects_to_gitter_with_a_lax_state_cookie() {
        let r = pages()
            .oneshot(confirm(Some("x=1; gb_csrf=c5rf"), "csrf=c5rf"))
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::FOUND);
        assert_eq!(
            r.headers()[header::LOCATION],
            "https://gitter.example/authorize?state=st8"
        );
        assert_eq!(
            r.headers()[header::SET_COOKIE],
            "gb_oauth=st8; Path=/oauth; Max-Age=900; HttpOnly; SameSite=Lax; Secure"
        );
    }

    #[tokio::test]
    async fn the_callback_passes_the_browsers_state_cookie_on() {
        let r = pages()
            .oneshot(
                Request::get("/oauth/callback?code=c&state=st8")
                    .header(header::COOKIE, "gb_oauth=st8")
                    .body(Body::empty())
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(body(r).await.contains("browser Some(&quot;st8&quot;)"));
    }

    #[test]
    fn escape_neutralises_markup() {
        assert_eq!(
            escape("<script>alert('x') & \"y\"</script>"),
            "&lt;script&gt;alert(&#39;x&#39;) &amp; &quot;y&quot;&lt;/script&gt;"
        );
    }
}
