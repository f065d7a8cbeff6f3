//! The axum layer of the fake Gitter: request parsing, auth/rate-limit/fault
//! plumbing and response shapes. All decisions are made by
//! [`GitterState`](super::state::GitterState).
//!
//! Two listeners, like the two hosts of the real service (docs/gitter-api.md §1.1):
//! * the API listener ([`router`], `api.gitter.im` and `gitter.im`):
//!   * `/v1/...` — the REST API (§3);
//!   * `/login/oauth/{authorize,token}` — OAuth (§2);
//!   * `/_sim/gitter/...` — fault and scripting controls for tests;
//! * the stream listener ([`stream_router`], `stream.gitter.im`):
//!   `/v1/rooms/{roomId}/chatMessages` (§5).
//!
//! Unknown routes and methods answer 404 `{"error":"Not Found"}` (§7.1); under
//! `/v1` they are authenticated first, as the real routers are (§8 "Scope").
//!
//! Faults for a chaos campaign: on the API host the delay and the hostile
//! answers (a huge body, a slow drip) wrap every route but the controls and
//! the browser's sign-in page, the OAuth token endpoint included; a lost
//! answer applies to `POST chatMessages`. On the stream host: flapping
//! (200, then the end at once), silence (nothing at all, heartbeats
//! neither, for a while) and an endless line. Refusing connections is below
//! HTTP, in [`crate::fake_hs::net`].

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{Path, Query, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::state::{ApiError, Caller, GitterState, Hostile, MessageQuery, RateInfo};
use super::{GitterHost, Shared};
use crate::fake_hs::net::ThisConn;
use crate::faults::FaultLimit;

type App = Arc<Shared>;

/// Build the router.
pub fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/user", get(user_index))
        .route("/v1/user/{uid}", get(user_show))
        .route("/v1/user/{uid}/rooms", get(user_rooms).post(user_join))
        .route("/v1/rooms", post(rooms_resolve))
        .route("/v1/rooms/{rid}/users", get(room_users))
        .route("/v1/rooms/{rid}/users/{uid}", delete(room_remove_user))
        .route(
            "/v1/rooms/{rid}/chatMessages",
            get(messages_list).post(messages_create),
        )
        .route(
            "/v1/rooms/{rid}/chatMessages/{mid}",
            put(message_update).delete(message_delete),
        )
        .route(
            "/v1/rooms/{rid}/chatMessages/{mid}/thread",
            get(message_thread),
        )
        .route(
            "/login/oauth/authorize",
            get(authorize_get).post(authorize_post),
        )
        .route("/login/oauth/token", post(token_exchange))
        .route("/_sim/gitter/fail", post(sim_fail))
        .route("/_sim/gitter/delay", post(sim_delay))
        .route("/_sim/gitter/clear-faults", post(sim_clear))
        .route("/_sim/gitter/drop-streams", post(sim_drop_streams))
        .route("/_sim/gitter/revoke", post(sim_revoke))
        .route("/_sim/gitter/advance-clock", post(sim_advance_clock))
        .route("/_sim/gitter/post", post(sim_post))
        .route("/_sim/gitter/files/{name}", get(sim_file))
        .route("/_sim/gitter/act", post(sim_act))
        .route("/_sim/gitter/faye", post(sim_faye))
        .route("/_sim/gitter/rooms/{room}/messages", get(sim_messages))
        .route("/_sim/gitter/lose-answers", post(sim_lose_answers))
        .route("/_sim/gitter/flap-streams", post(sim_flap_streams))
        .route("/_sim/gitter/silence-streams", post(sim_silence_streams))
        .route("/_sim/gitter/hostile", post(sim_hostile))
        .route("/_sim/gitter/refuse-connections", post(sim_refuse))
        .fallback(not_found)
        .method_not_allowed_fallback(not_found)
        .layer(axum::middleware::from_fn(cors))
        .layer(axum::middleware::from_fn_with_state(
            shared.clone(),
            api_faults,
        ))
        .with_state(shared)
}

/// The API host's faults around every route (the controls and the sign-in
/// page a browser shows excepted): the delay first, then the route, then a
/// hostile answer in place of (huge body) or around (slow drip) its answer.
async fn api_faults(
    State(app): State<App>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let path = request.uri().path();
    if path.starts_with("/_sim/") || path == "/login/oauth/authorize" {
        return next.run(request).await;
    }
    wait_out_delay(&app).await;
    let response = next.run(request).await;
    let now = app.clock.now_ms();
    let hostile = app.lock().take_hostile_answer(now);
    match hostile {
        Some(Hostile::HugeBody { bytes, status }) => {
            tracing::debug!(bytes, status, "fake gitter: huge answer");
            huge_body(bytes, status)
        }
        Some(Hostile::SlowDrip {
            chunk_bytes,
            interval_ms,
        }) => drip(response, chunk_bytes, Duration::from_millis(interval_ms)).await,
        _ => response,
    }
}

/// The injected delay. Clearing faults ends it for requests already
/// waiting: a delay of minutes cannot leave them hanging after the clear.
async fn wait_out_delay(app: &App) {
    let cleared = app.cleared.notified();
    tokio::pin!(cleared);
    // Registered before the delay is read: a clear in between still counts.
    cleared.as_mut().enable();
    let delay = app.lock().delay();
    if !delay.is_zero() {
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cleared => {}
        }
    }
}

/// `bytes` bytes of body with `status`: `["` and then `x` for ever, the start
/// of a JSON array holding one string that never ends, so a parser cannot
/// give up before the end. Made lazily from one shared 64 KiB chunk: the
/// body is never in memory whole, and the client's reading paces it.
fn huge_body(bytes: u64, status: u16) -> Response {
    const CHUNK: usize = 64 * 1024;
    let mut first = vec![b'x'; CHUNK];
    first[..2].copy_from_slice(b"[\"");
    let first = Bytes::from(first);
    let filler = Bytes::from(vec![b'x'; CHUNK]);
    let body = futures_util::stream::unfold(0u64, move |sent| {
        let chunk = if sent == 0 {
            first.clone()
        } else {
            filler.clone()
        };
        async move {
            if sent >= bytes {
                return None;
            }
            let n = (bytes - sent).min(CHUNK as u64) as usize;
            Some((Ok::<_, Infallible>(chunk.slice(..n)), sent + n as u64))
        }
    });
    let mut resp = Response::new(Body::from_stream(body));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// The real answer, status and headers at once, its body `chunk` bytes per
/// `interval` (with its true `Content-Length`, as a slow link would carry
/// it). API answers are small JSON, so reading it first costs nothing.
async fn drip(response: Response, chunk: usize, interval: Duration) -> Response {
    let (mut parts, body) = response.into_parts();
    let bytes = match axum::body::to_bytes(body, usize::MAX).await {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(error = %e, "fake gitter: answer unreadable for a drip");
            Bytes::new()
        }
    };
    if bytes.is_empty() {
        return Response::from_parts(parts, Body::empty());
    }
    parts
        .headers
        .insert(header::CONTENT_LENGTH, HeaderValue::from(bytes.len()));
    let body = futures_util::stream::unfold((bytes, true), move |(rest, first)| async move {
        if rest.is_empty() {
            return None;
        }
        if !first {
            tokio::time::sleep(interval).await;
        }
        let n = chunk.min(rest.len());
        Some((
            Ok::<_, Infallible>(rest.slice(..n)),
            (rest.slice(n..), false),
        ))
    });
    Response::from_parts(parts, Body::from_stream(body))
}

/// CORS as WEBAPP's `server/api/index.js` sets it (docs/gitter-api.md §1.2): any origin, the
/// rate-limit headers exposed, and preflight `OPTIONS` answered before auth.
async fn cors(request: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let preflight = request.method() == axum::http::Method::OPTIONS;
    let mut response = if preflight {
        let mut r = StatusCode::NO_CONTENT.into_response();
        let h = r.headers_mut();
        h.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static("GET, POST, PUT, DELETE, PATCH"),
        );
        h.insert(
            header::ACCESS_CONTROL_ALLOW_HEADERS,
            HeaderValue::from_static("content-type, x-access-token, authorization, accept"),
        );
        r
    } else {
        next.run(request).await
    };
    let h = response.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("X-RateLimit-Limit, X-RateLimit-Remaining, X-RateLimit-Reset"),
    );
    response
}

/// The stream host's router (`stream.gitter.im`, §5.1).
pub fn stream_router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/v1/rooms/{rid}/chatMessages", get(stream_messages))
        .route("/bayeux", post(bayeux))
        .fallback(stream_not_found)
        .method_not_allowed_fallback(stream_not_found)
        .with_state(shared)
}

/// The realtime endpoint (`ws.gitter.im/bayeux`, docs/gitter-api.md §6): one long-polling
/// POST of a batch of Bayeux messages. A connect with nothing to deliver is held until
/// something is published for its client, a newer connect of the client comes, or the hold
/// ends.
async fn bayeux(State(app): State<App>, body: Bytes) -> Response {
    let batch = match serde_json::from_slice::<Value>(&body) {
        Ok(Value::Array(batch)) => batch,
        Ok(message @ Value::Object(_)) => vec![message],
        _ => {
            return json_response(
                400,
                &json!({ "error": "a Bayeux request is a JSON array of messages" }),
            );
        }
    };
    let held = {
        let mut state = app.lock();
        let (answers, held) = state.bayeux(&batch);
        match held {
            None => return json_response(200, &Value::Array(answers)),
            Some(held) => (answers, held),
        }
    };
    let (mut answers, held) = held;
    let wake = held.wake.clone();
    let notified = wake.notified();
    tokio::pin!(notified);
    notified.as_mut().enable();
    // A publish between the answer above and `enable` queued its delivery already: look
    // once more before waiting.
    let queued = app.lock().faye_pending(&held.client_id, held.generation);
    if !queued {
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep(Duration::from_millis(super::state::FAYE_HOLD_MS)) => {}
        }
    }
    let delivered = app.lock().faye_drain(&held.client_id, held.generation);
    answers.push(held.reply);
    answers.extend(delivered);
    json_response(200, &Value::Array(answers))
}

/// The routers that authenticate and rate-limit every request before their
/// own routes and 404s (docs/gitter-api.md §8 "Scope").
const AUTHENTICATED_PREFIXES: [&str; 6] = [
    "/v1/user",
    "/v1/rooms",
    "/v1/users",
    "/v1/groups",
    "/v1/orgs",
    "/v1/oauth-clients",
];

/// Unknown route or method. Under the authenticated routers the real server
/// authenticates (and counts the request) before the 404, so a missing token
/// is a 401; elsewhere it is a plain 404.
async fn not_found(
    State(app): State<App>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path();
    let authenticated = AUTHENTICATED_PREFIXES.iter().any(|p| {
        path.strip_prefix(p)
            .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
    });
    if authenticated {
        run_api(&app, &headers, uri.query(), Some(&body), |_, _, _, _| {
            Err(ApiError::not_found())
        })
        .await
    } else {
        error_response(&ApiError::not_found(), None)
    }
}

async fn stream_not_found() -> Response {
    error_response(&ApiError::not_found(), None)
}

// ----------------------------------------------------------------------
// plumbing

enum Reply {
    Json(Value),
    NoContent,
}

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

fn error_response(err: &ApiError, rate: Option<RateInfo>) -> Response {
    let mut resp = json_response(err.status, &err.body());
    if let Some(rate) = rate {
        add_rate_headers(&mut resp, rate);
    }
    resp
}

fn add_rate_headers(resp: &mut Response, rate: RateInfo) {
    let h = resp.headers_mut();
    h.insert("X-RateLimit-Limit", HeaderValue::from(rate.limit));
    h.insert("X-RateLimit-Remaining", HeaderValue::from(rate.remaining));
    h.insert("X-RateLimit-Reset", HeaderValue::from(rate.reset_ms));
}

/// WEBAPP `get-access-token-from-req.js` order (docs/gitter-api.md §1.2):
/// `Authorization: Bearer` (scheme case-insensitive, cut at the first comma),
/// `x-access-token`, `access_token` in the body, in the query, then a
/// `Token/<token>` fragment of the `User-Agent`.
fn extract_token(headers: &HeaderMap, body: Option<&Value>, query: Option<&str>) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if v.len() > 7 && v[..7].eq_ignore_ascii_case("bearer ") {
            let t = v[7..].split(',').next().unwrap_or("").trim();
            if !t.is_empty() {
                return Some(t.to_string());
            }
        }
    }
    if let Some(v) = headers.get("x-access-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    if let Some(t) = body
        .and_then(|b| b.get("access_token"))
        .and_then(Value::as_str)
    {
        return Some(t.to_string());
    }
    if let Some(t) = Params::parse(query).string("access_token") {
        return Some(t);
    }
    // Last, a `Token/<token>` fragment in the User-Agent.
    headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .and_then(|ua| ua.split_whitespace().find_map(|w| w.strip_prefix("Token/")))
        .filter(|t| !t.is_empty())
        .map(str::to_owned)
}

fn is_chunked(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::TRANSFER_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.to_ascii_lowercase().contains("chunked"))
}

fn reason(status: u16) -> String {
    StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error")
        .to_string()
}

/// Parse a JSON or form body into a JSON object (docs/gitter-api.md §1.2: both
/// parsers are installed). Repeated form keys and `key[]` become arrays.
fn parse_body(headers: &HeaderMap, body: &Bytes) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_ascii_lowercase();
    if ct.starts_with("application/x-www-form-urlencoded") {
        let mut map = serde_json::Map::new();
        for (k, v) in url::form_urlencoded::parse(body) {
            let (key, is_array) = match k.strip_suffix("[]") {
                Some(k) => (k.to_string(), true),
                None => (k.into_owned(), false),
            };
            match map.get_mut(&key) {
                Some(Value::Array(a)) => a.push(json!(v)),
                Some(existing) => {
                    let prev = existing.take();
                    *existing = json!([prev, v]);
                }
                None if is_array => {
                    map.insert(key, json!([v]));
                }
                None => {
                    map.insert(key, json!(v));
                }
            }
        }
        return Ok(Value::Object(map));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        _ => Err(ApiError::bad_request("Bad Request")),
    }
}

/// Run one REST call in the server's middleware order (after the delay of
/// [`api_faults`]): 406 for chunked bodies, the body (400 when unreadable:
/// Express's body parsers run app-wide, before any router, §1.2), injected
/// faults, auth (401 without rate headers, as unauthenticated requests are
/// not counted; the body may carry `access_token`), rate limit (headers on
/// every counted response), then `f`.
async fn run_api<F>(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
    body: Option<&Bytes>,
    f: F,
) -> Response
where
    F: FnOnce(&mut GitterState, &Caller, u64, &Value) -> Result<Reply, ApiError>,
{
    if is_chunked(headers) {
        return error_response(
            &ApiError::new(
                406,
                "Using the `Transfer-Encoding: chunked` header is not allowed when interacting with the API",
            ),
            None,
        );
    }
    let body = match body.map_or(Ok(json!({})), |b| parse_body(headers, b)) {
        Ok(body) => body,
        Err(e) => return error_response(&e, None),
    };
    let now = app.clock.now_ms();
    let mut state = app.lock();
    if let Some(response) = injected_fault(&mut state, now) {
        return response;
    }
    let token = extract_token(headers, Some(&body), query);
    let caller = match state.authenticate(token.as_deref()) {
        Ok(c) => c,
        Err(e) => return error_response(&e, None),
    };
    let rate = match state.rate_check(&caller, now) {
        Ok(r) => r,
        Err(r) => {
            return error_response(&ApiError::new(429, "API rate limit exceeded"), Some(r));
        }
    };
    let mut resp = match f(&mut state, &caller, now, &body) {
        Ok(Reply::Json(v)) => json_response(200, &v),
        Ok(Reply::NoContent) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error_response(&e, None),
    };
    add_rate_headers(&mut resp, rate);
    resp
}

/// An injected failure due now, as the response to send (429s carry the
/// rate headers a real limiter would send).
fn injected_fault(state: &mut GitterState, now: u64) -> Option<Response> {
    let status = state.take_fault(now)?;
    tracing::debug!(status, "fake gitter: injected failure");
    let err = if status == 429 {
        ApiError::new(429, "API rate limit exceeded")
    } else {
        ApiError::new(status, reason(status))
    };
    let rate = (status == 429).then(|| RateInfo {
        limit: state.config.rate_limit,
        remaining: 0,
        reset_ms: now + state.config.rate_window.as_millis() as u64,
    });
    Some(error_response(&err, rate))
}

fn json_ok(v: Value) -> Result<Reply, ApiError> {
    Ok(Reply::Json(v))
}

fn str_field<'a>(body: &'a Value, key: &str) -> Option<&'a str> {
    body.get(key).and_then(Value::as_str)
}

/// Accept `true`, `"true"` and `1` (form bodies carry strings).
fn bool_field(body: &Value, key: &str) -> bool {
    match body.get(key) {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true" || s == "1",
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        _ => false,
    }
}

/// Query parameters read one at a time, as Express hands `req.query` to the
/// handlers: a value that does not parse as the number or flag a handler
/// wants is ignored (the handler's default applies, like `parseInt` giving
/// `NaN`), and never hides the other parameters. The first of repeated keys
/// wins.
#[derive(Debug, Default)]
struct Params(HashMap<String, String>);

impl Params {
    fn parse(raw: Option<&str>) -> Params {
        let mut map = HashMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Params(map)
    }

    fn str(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    fn string(&self, key: &str) -> Option<String> {
        self.str(key).map(str::to_owned)
    }

    fn number(&self, key: &str) -> Option<u64> {
        self.str(key).and_then(|v| v.trim().parse().ok())
    }

    fn flag(&self, key: &str) -> Option<bool> {
        self.str(key).map(|v| v == "true" || v == "1")
    }

    fn messages(&self) -> MessageQuery {
        MessageQuery {
            limit: self.number("limit"),
            skip: self.number("skip"),
            before_id: self.string("beforeId"),
            after_id: self.string("afterId"),
            around_id: self.string("aroundId"),
            include_threads: self.flag("includeThreads"),
        }
    }
}

// ----------------------------------------------------------------------
// REST handlers

async fn user_index(State(app): State<App>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        // `GET /v1/user` is an array holding one user (§3.1).
        json_ok(json!([s.user_show(c, "me")?]))
    })
    .await
}

async fn user_show(
    State(app): State<App>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        json_ok(s.user_show(c, &uid)?)
    })
    .await
}

async fn user_rooms(
    State(app): State<App>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        json_ok(Value::Array(s.rooms_for(c, &uid)?))
    })
    .await
}

async fn user_join(
    State(app): State<App>,
    Path(uid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    run_api(
        &app,
        &headers,
        q.as_deref(),
        Some(&body),
        |s, c, now, body| json_ok(s.join_room(c, &uid, str_field(body, "id"), now)?),
    )
    .await
}

async fn rooms_resolve(
    State(app): State<App>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    // `uri` may also come in the query (§3.0 #6).
    let query_uri = Params::parse(q.as_deref()).string("uri");
    run_api(
        &app,
        &headers,
        q.as_deref(),
        Some(&body),
        |s, c, now, body| {
            let uri = str_field(body, "uri").or(query_uri.as_deref());
            json_ok(s.resolve_room(c, uri, now)?)
        },
    )
    .await
}

async fn room_users(
    State(app): State<App>,
    Path(rid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let sq = Params::parse(q.as_deref());
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        json_ok(Value::Array(s.room_users(
            c,
            &rid,
            sq.number("skip"),
            sq.number("limit"),
            sq.str("q"),
        )?))
    })
    .await
}

async fn room_remove_user(
    State(app): State<App>,
    Path((rid, uid)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let sq = Params::parse(q.as_deref());
    let by_username = sq.str("type") == Some("username");
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        json_ok(s.remove_user(c, &rid, &uid, by_username)?)
    })
    .await
}

async fn messages_list(
    State(app): State<App>,
    Path(rid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let params = Params::parse(q.as_deref());
    let mq = params.messages();
    let lean = params.flag("lean") == Some(true);
    let lookups = params.str("lookups") == Some("user");
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        let list = s.list_messages(c, &rid, &mq)?;
        json_ok(shape_messages(list, lean, lookups))
    })
    .await
}

/// The list's presentation options (§3.6): `lean=true` drops `fromUser`'s display name and
/// avatars and the empty arrays; `lookups=user` turns each `fromUser` into its id and puts
/// the users once in `{"items", "lookups": {"users": {id: User}}}`.
fn shape_messages(mut list: Vec<Value>, lean: bool, lookups: bool) -> Value {
    let mut users = serde_json::Map::new();
    for m in &mut list {
        let Some(o) = m.as_object_mut() else { continue };
        if lean {
            o.retain(|_, v| v.as_array().is_none_or(|a| !a.is_empty()));
            if let Some(u) = o.get_mut("fromUser").and_then(Value::as_object_mut) {
                for k in [
                    "displayName",
                    "avatarUrl",
                    "avatarUrlSmall",
                    "avatarUrlMedium",
                ] {
                    u.remove(k);
                }
            }
        }
        if lookups && let Some(user) = o.remove("fromUser") {
            let id = user.get("id").cloned().unwrap_or(Value::Null);
            if let Some(key) = id.as_str() {
                users.insert(key.to_owned(), user);
            }
            o.insert("fromUser".into(), id);
        }
    }
    if lookups {
        json!({ "items": list, "lookups": { "users": users } })
    } else {
        Value::Array(list)
    }
}

/// `POST chatMessages`; with a lost-answer fault the message is stored (and
/// streamed) and the connection then closes without an answer.
async fn messages_create(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    let resp = run_api(
        &app,
        &headers,
        q.as_deref(),
        Some(&body),
        |s, c, now, body| {
            let text = str_field(body, "text");
            let status = bool_field(body, "status");
            let parent = str_field(body, "parentId");
            json_ok(s.post_message(c, &rid, text, status, parent, now)?)
        },
    )
    .await;
    if app.lock().take_lost_send() {
        tracing::debug!(room = %rid, "fake gitter: send answer lost on purpose");
        conn.drop_answer();
    }
    resp
}

async fn message_update(
    State(app): State<App>,
    Path((rid, mid)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
    body: Bytes,
) -> Response {
    run_api(
        &app,
        &headers,
        q.as_deref(),
        Some(&body),
        |s, c, now, body| json_ok(s.edit_message(c, &rid, &mid, str_field(body, "text"), now)?),
    )
    .await
}

async fn message_delete(
    State(app): State<App>,
    Path((rid, mid)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        s.delete_message(c, &rid, &mid)?;
        Ok(Reply::NoContent)
    })
    .await
}

async fn message_thread(
    State(app): State<App>,
    Path((rid, mid)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    let mq = Params::parse(q.as_deref()).messages();
    run_api(&app, &headers, q.as_deref(), None, |s, c, _, _| {
        json_ok(Value::Array(s.thread(c, &rid, &mid, &mq)?))
    })
    .await
}

// ----------------------------------------------------------------------
// streaming (docs/gitter-api.md §5)

async fn stream_messages(
    State(app): State<App>,
    Path(rid): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Response {
    open_stream(&app, &headers, q.as_deref(), &rid, GitterState::open_stream)
}

type OpenFn = fn(
    &mut GitterState,
    Option<&str>,
    &str,
) -> Result<(u64, tokio::sync::mpsc::UnboundedReceiver<String>), ApiError>;

/// A streaming response: lines as `<json>\n`, keep-alives as `" \n"`; the
/// body ends when the state drops our sender (drop_streams, revoke_token).
/// Faults, once auth has passed (a refused token is still a JSON error): a
/// flapping stream ends right after its 200, an endless line never sends a
/// newline, and during a silence nothing is written at all.
fn open_stream(
    app: &App,
    headers: &HeaderMap,
    query: Option<&str>,
    rid: &str,
    open: OpenFn,
) -> Response {
    let now = app.clock.now_ms();
    let opened = {
        let mut state = app.lock();
        if let Some(response) = injected_fault(&mut state, now) {
            return response;
        }
        let token = extract_token(headers, None, query);
        open(&mut state, token.as_deref(), rid).map(|(_, rx)| {
            let flap = state.take_flap(now);
            let endless = !flap && state.take_endless_line(now);
            (rx, state.config.heartbeat, flap, endless)
        })
    };
    let (rx, heartbeat, flap, endless) = match opened {
        Ok(x) => x,
        // Auth and permission errors come back as REST-style JSON before any
        // streaming starts (§5.2).
        Err(e) => return error_response(&e, None),
    };
    let body = if flap {
        tracing::debug!(room = %rid, "fake gitter: stream flaps");
        // Dropping the receiver unregisters the stream too.
        drop(rx);
        Body::from_stream(futures_util::stream::empty::<Result<Bytes, Infallible>>())
    } else if endless {
        tracing::debug!(room = %rid, "fake gitter: endless line");
        drop(rx);
        let chunk = Bytes::from(vec![b'x'; 16 * 1024]);
        Body::from_stream(futures_util::stream::repeat_with(move || {
            Ok::<_, Infallible>(chunk.clone())
        }))
    } else {
        tracing::debug!(room = %rid, "fake gitter: stream opened");
        Body::from_stream(stream_lines(app.clone(), rx, heartbeat))
    };
    let mut resp = Response::new(body);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json; charset=utf-8"),
    );
    resp
}

/// Waits out a stream silence, if one is on; clearing faults ends it.
/// Returns whether there was one.
async fn wait_out_silence(app: &App) -> bool {
    let cleared = app.cleared.notified();
    tokio::pin!(cleared);
    cleared.as_mut().enable();
    let left = app.lock().silence_left(app.clock.now_ms());
    let Some(left) = left else { return false };
    tokio::select! {
        _ = tokio::time::sleep(left) => {}
        _ = cleared => {}
    }
    true
}

/// The lines of one stream. A message that arrives during a silence is held
/// and sent when it ends (a stalled TCP path delays bytes, it does not lose
/// them); heartbeats due during the silence are not sent at all.
fn stream_lines(
    app: App,
    rx: tokio::sync::mpsc::UnboundedReceiver<String>,
    heartbeat: Duration,
) -> impl futures_util::Stream<Item = Result<Bytes, Infallible>> {
    let heartbeat = heartbeat.max(Duration::from_millis(1));
    let interval = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    futures_util::stream::unfold(
        (app, rx, interval, None::<String>),
        |(app, mut rx, mut iv, mut held)| async move {
            loop {
                if wait_out_silence(&app).await {
                    iv.reset();
                    continue;
                }
                if let Some(line) = held.take() {
                    return Some((Ok(Bytes::from(line)), (app, rx, iv, held)));
                }
                tokio::select! {
                    msg = rx.recv() => {
                        // Checked for a silence before it goes out.
                        held = Some(msg?);
                    }
                    _ = iv.tick() => {
                        if app.lock().silence_left(app.clock.now_ms()).is_none() {
                            return Some((Ok(Bytes::from_static(b" \n")), (app, rx, iv, held)));
                        }
                    }
                }
            }
        },
    )
}

// ----------------------------------------------------------------------
// OAuth (docs/gitter-api.md §2)

fn html_page(status: u16, title: &str, body_html: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
    let page = format!(
        "<!DOCTYPE html><html><head><meta charset=\"utf-8\"><title>{t}</title></head><body><h1>{t}</h1>{body_html}</body></html>",
        t = super::render::escape(title)
    );
    (status, Html(page)).into_response()
}

fn redirect_with_code(redirect_uri: &str, code: &str, state: Option<&str>) -> Response {
    let location = match url::Url::parse(redirect_uri) {
        Ok(mut u) => {
            {
                let mut pairs = u.query_pairs_mut();
                pairs.append_pair("code", code);
                if let Some(s) = state {
                    pairs.append_pair("state", s);
                }
            }
            u.to_string()
        }
        Err(_) => return html_page(400, "Bad redirect_uri", ""),
    };
    let mut resp = StatusCode::FOUND.into_response();
    if let Ok(v) = HeaderValue::from_str(&location) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    resp
}

/// Both the sign-in page and the `login_as` shortcut: validate the client
/// and redirect URI first, like WEBAPP (401 HTML page on mismatch).
fn authorize(app: &App, params: &HashMap<String, String>, username: Option<&str>) -> Response {
    let get = |k: &str| params.get(k).map(String::as_str);
    let mut state = app.lock();
    if let Err((status, msg)) =
        state.check_authorize(get("client_id"), get("redirect_uri"), get("response_type"))
    {
        return html_page(
            status,
            "Authorization error",
            &format!("<p>{}</p>", super::render::escape(&msg)),
        );
    }
    let Some(username) = username else {
        // The sign-in form: pick a test user, POST back to this URL.
        let mut options = String::new();
        for u in state.users().take(200) {
            options.push_str(&format!(
                "<li><label><input type=\"radio\" name=\"username\" value=\"{n}\"> {d} (@{n})</label></li>",
                n = super::render::escape(&u.username),
                d = super::render::escape(&u.display_name)
            ));
        }
        let hidden: String = ["client_id", "redirect_uri", "response_type", "state"]
            .iter()
            .filter_map(|k| {
                get(k).map(|v| {
                    format!(
                        "<input type=\"hidden\" name=\"{k}\" value=\"{}\">",
                        super::render::escape(v)
                    )
                })
            })
            .collect();
        return html_page(
            200,
            "Sign in to the fake Gitter",
            &format!(
                "<form method=\"post\" action=\"/login/oauth/authorize\">{hidden}<ul>{options}</ul><button type=\"submit\">Allow</button></form>"
            ),
        );
    };
    let redirect_uri = state.config.redirect_uri.clone();
    match state.issue_code(username) {
        Some(code) => redirect_with_code(&redirect_uri, &code, get("state")),
        None => html_page(404, "Unknown user", "<p>No such test user.</p>"),
    }
}

async fn authorize_get(
    State(app): State<App>,
    Query(params): Query<HashMap<String, String>>,
) -> Response {
    // `login_as` is the scripts' shortcut; otherwise the pre-approved test
    // user, if any; otherwise the sign-in form.
    let login_as = params
        .get("login_as")
        .cloned()
        .or_else(|| app.lock().config.auto_approve.clone());
    authorize(&app, &params, login_as.as_deref())
}

async fn authorize_post(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let params = match parse_body(&headers, &body) {
        Ok(v) => flatten(&v),
        Err(_) => return html_page(400, "Bad request", ""),
    };
    let Some(username) = params.get("username").cloned() else {
        return html_page(400, "Bad request", "<p>Choose a user.</p>");
    };
    authorize(&app, &params, Some(&username))
}

fn flatten(v: &Value) -> HashMap<String, String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .filter_map(|(k, v)| match v {
                    Value::String(s) => Some((k.clone(), s.clone())),
                    Value::Number(n) => Some((k.clone(), n.to_string())),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default()
}

async fn token_exchange(State(app): State<App>, headers: HeaderMap, body: Bytes) -> Response {
    let form = match parse_body(&headers, &body) {
        Ok(v) => flatten(&v),
        Err(_) => {
            return json_response(
                400,
                &json!({"error": "invalid_request", "error_description": "Malformed body"}),
            );
        }
    };
    let result = app.lock().exchange_code(&form);
    let mut resp = match result {
        Ok(token) => json_response(
            200,
            &json!({ "access_token": token, "token_type": "Bearer" }),
        ),
        Err(e) => json_response(e.status, &e.body()),
    };
    let h = resp.headers_mut();
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    resp
}

// ----------------------------------------------------------------------
// simulator controls

#[derive(Debug, Deserialize)]
struct FailReq {
    status: u16,
    count: Option<u32>,
    duration_ms: Option<u64>,
}

async fn sim_fail(State(app): State<App>, axum::Json(req): axum::Json<FailReq>) -> Response {
    let now = app.clock.now_ms();
    let mut s = app.lock();
    match (req.count, req.duration_ms) {
        (_, Some(ms)) => s.fail_until(now + ms, req.status),
        (n, None) => s.fail_next(n.unwrap_or(1), req.status),
    }
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct DelayReq {
    ms: u64,
}

async fn sim_delay(State(app): State<App>, axum::Json(req): axum::Json<DelayReq>) -> Response {
    app.lock().set_delay(Duration::from_millis(req.ms));
    json_response(200, &json!({}))
}

async fn sim_clear(State(app): State<App>) -> Response {
    app.clear_faults();
    json_response(200, &json!({}))
}

/// `count` and `duration_ms` of the fault controls (see [`FaultLimit`]).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LimitReq {
    count: Option<u32>,
    duration_ms: Option<u64>,
}

impl LimitReq {
    fn limit(&self) -> FaultLimit {
        FaultLimit::from_fields(self.count, self.duration_ms)
    }

    /// An empty body means once; a body that is not this shape is refused
    /// rather than read as once (a typo must not pass unnoticed).
    fn parse(body: &Bytes) -> Result<Self, String> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        serde_json::from_slice(body).map_err(|e| format!("bad control body: {e}"))
    }
}

async fn sim_lose_answers(State(app): State<App>, body: Bytes) -> Response {
    let req = match LimitReq::parse(&body) {
        Ok(r) => r,
        Err(e) => return json_response(400, &json!({ "error": e })),
    };
    app.lock().lose_send_answers(req.count.unwrap_or(1));
    json_response(200, &json!({}))
}

async fn sim_flap_streams(State(app): State<App>, body: Bytes) -> Response {
    let req = match LimitReq::parse(&body) {
        Ok(r) => r,
        Err(e) => return json_response(400, &json!({ "error": e })),
    };
    let now = app.clock.now_ms();
    app.lock().flap_streams(req.limit().budget(now));
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct SilenceReq {
    duration_ms: u64,
}

async fn sim_silence_streams(
    State(app): State<App>,
    axum::Json(req): axum::Json<SilenceReq>,
) -> Response {
    let now = app.clock.now_ms();
    app.lock().silence_streams_until(now + req.duration_ms);
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct HostileReq {
    #[serde(flatten)]
    hostile: Hostile,
    count: Option<u32>,
    duration_ms: Option<u64>,
}

async fn sim_hostile(State(app): State<App>, axum::Json(req): axum::Json<HostileReq>) -> Response {
    let now = app.clock.now_ms();
    app.lock().set_hostile(
        req.hostile,
        FaultLimit::from_fields(req.count, req.duration_ms).budget(now),
    );
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct RefuseReq {
    duration_ms: u64,
    #[serde(default)]
    host: GitterHost,
}

/// Answered once the sockets are closed; on the API host this connection
/// answers and then closes.
async fn sim_refuse(
    State(app): State<App>,
    conn: ThisConn,
    axum::Json(req): axum::Json<RefuseReq>,
) -> Response {
    app.refuse_for(Duration::from_millis(req.duration_ms), req.host, conn.id())
        .await;
    let mut resp = json_response(200, &json!({}));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[derive(Debug, Default, Deserialize)]
struct DropReq {
    room: Option<String>,
}

async fn sim_drop_streams(State(app): State<App>, body: Bytes) -> Response {
    let req: DropReq = serde_json::from_slice(&body).unwrap_or_default();
    let mut s = app.lock();
    let room_id = match req.room.as_deref() {
        Some(r) => match s.room_ref(r) {
            Some(room) => Some(room.id.clone()),
            None => return error_response(&ApiError::not_found(), None),
        },
        None => None,
    };
    let dropped = s.drop_streams(room_id.as_deref());
    json_response(200, &json!({ "dropped": dropped }))
}

#[derive(Debug, Deserialize)]
struct RevokeReq {
    token: String,
}

async fn sim_revoke(State(app): State<App>, axum::Json(req): axum::Json<RevokeReq>) -> Response {
    let existed = app.lock().revoke_token(&req.token);
    json_response(200, &json!({ "revoked": existed }))
}

#[derive(Debug, Deserialize)]
struct AdvanceReq {
    ms: u64,
}

async fn sim_advance_clock(
    State(app): State<App>,
    axum::Json(req): axum::Json<AdvanceReq>,
) -> Response {
    app.clock.advance(Duration::from_millis(req.ms));
    json_response(200, &json!({ "now_ms": app.clock.now_ms() }))
}

#[derive(Debug, Deserialize)]
struct PostReq {
    room: String,
    username: String,
    text: String,
    #[serde(default)]
    status: bool,
    #[serde(rename = "parentId")]
    parent_id: Option<String>,
}

async fn sim_post(State(app): State<App>, axum::Json(req): axum::Json<PostReq>) -> Response {
    let now = app.clock.now_ms();
    let mut s = app.lock();
    let result = match (&req.parent_id, req.status) {
        (Some(p), _) => s.reply_as(&req.username, &req.room, p, &req.text, now),
        (None, true) => s.post_status_as(&req.username, &req.room, &req.text, now),
        (None, false) => s.post_as(&req.username, &req.room, &req.text, now),
    };
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e, None),
    }
}

/// A file on the web, as an image in a message links to one: the same bytes for the same
/// name (a PNG signature, then the name repeated to 4 KiB), so a test can check what was
/// uploaded. `missing*` names are 404.
pub fn sim_file_bytes(name: &str) -> Vec<u8> {
    let mut bytes = b"\x89PNG\r\n\x1a\n".to_vec();
    bytes.extend(name.bytes().cycle().take(4096));
    bytes
}

async fn sim_file(Path(name): Path<String>) -> Response {
    if name.starts_with("missing") {
        return (StatusCode::NOT_FOUND, "no such file").into_response();
    }
    let mut resp = (StatusCode::OK, sim_file_bytes(&name)).into_response();
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("image/png"));
    resp
}

async fn sim_messages(State(app): State<App>, Path(room): Path<String>) -> Response {
    match app.lock().messages_of(&room) {
        Ok(v) => json_response(200, &Value::Array(v)),
        Err(e) => error_response(&e, None),
    }
}

/// Something a Gitter user does in another Gitter client, for the end-to-end tests (the
/// scenarios call the state directly).
#[derive(Debug, Deserialize)]
#[serde(tag = "do", rename_all = "snake_case", deny_unknown_fields)]
enum ActReq {
    Edit {
        room: String,
        username: String,
        id: String,
        text: String,
    },
    Delete {
        room: String,
        username: String,
        id: String,
    },
    Join {
        room: String,
        username: String,
    },
    Leave {
        room: String,
        username: String,
    },
    RoomDetails {
        room: String,
        name: Option<String>,
        topic: Option<String>,
    },
    Rename {
        username: String,
        display_name: String,
    },
}

async fn sim_act(State(app): State<App>, axum::Json(req): axum::Json<ActReq>) -> Response {
    let now = app.clock.now_ms();
    let mut s = app.lock();
    let result = match req {
        ActReq::Edit {
            room,
            username,
            id,
            text,
        } => s.edit_as(&username, &room, &id, &text, now),
        ActReq::Delete { room, username, id } => {
            s.delete_as(&username, &room, &id).map(|()| json!({}))
        }
        ActReq::Join { room, username } => s.join_as(&username, &room, now),
        ActReq::Leave { room, username } => s.leave_as(&username, &room),
        ActReq::RoomDetails { room, name, topic } => s
            .set_room_details(&room, name.as_deref(), topic.as_deref())
            .map(|()| json!({})),
        ActReq::Rename {
            username,
            display_name,
        } => s.rename_user(&username, &display_name).map(|()| json!({})),
    };
    match result {
        Ok(v) => json_response(200, &v),
        Err(e) => error_response(&e, None),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct FayeReq {
    /// Forget every client, as a restart of the Faye server would.
    forget_clients: bool,
    /// The next delivery skips a sequence number.
    skip_sequence: bool,
}

/// Faults of the realtime endpoint; answers how many clients there are.
async fn sim_faye(State(app): State<App>, body: Bytes) -> Response {
    let req: FayeReq = serde_json::from_slice(&body).unwrap_or_default();
    let mut s = app.lock();
    let forgotten = if req.forget_clients {
        s.faye_forget_clients()
    } else {
        0
    };
    if req.skip_sequence {
        s.faye_skip_sequence();
    }
    json_response(
        200,
        &json!({ "forgotten": forgotten, "clients": s.faye_clients() }),
    )
}
