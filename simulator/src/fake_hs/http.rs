//! The axum layer of the fake homeserver, and the AS transaction pusher.
//!
//! Routes: the Client-Server endpoints a bridge uses under
//! `/_matrix/client/v3` (also `r0`), the AS ping under `/_matrix/client/v1`,
//! media upload/download, and `/_sim/hs/...` controls. Unknown routes answer
//! 404 `M_UNRECOGNIZED`, wrong methods 405 `M_UNRECOGNIZED`, like Synapse.
//!
//! Every request outside `/_sim` goes through the same gate, so the faults
//! reach every route: the delay, then the injected errors (an outage is a 503
//! on every path, known or not), then the route, then the lost-answer fault
//! (the route's work is done, the connection closes without the answer).

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Shared;
use super::net::ThisConn;
use super::state::{CreateRoom, CsRoute, HsState, MatrixError, Requester, check_alias_syntax};

type App = Arc<Shared>;

/// Build the router.
pub fn router(shared: Arc<Shared>) -> Router {
    let cs: Router<App> = Router::new()
        .route("/register", post(register))
        .route("/account/whoami", get(whoami))
        .route("/createRoom", post(create_room))
        .route("/joined_rooms", get(joined_rooms))
        .route("/join/{room}", post(join_any))
        .route("/rooms/{rid}/join", post(join_room))
        .route("/rooms/{rid}/invite", post(invite))
        .route("/rooms/{rid}/leave", post(leave))
        .route("/rooms/{rid}/forget", post(forget))
        .route("/rooms/{rid}/kick", post(kick))
        .route("/rooms/{rid}/send/{kind}/{txn}", put(send))
        .route(
            "/rooms/{rid}/state/{kind}",
            put(put_state_nokey).get(get_state_nokey),
        )
        .route(
            "/rooms/{rid}/state/{kind}/",
            put(put_state_nokey).get(get_state_nokey),
        )
        .route(
            "/rooms/{rid}/state/{kind}/{key}",
            put(put_state).get(get_state),
        )
        .route("/rooms/{rid}/redact/{eid}/{txn}", put(redact))
        .route("/rooms/{rid}/members", get(members))
        .route("/rooms/{rid}/joined_members", get(joined_members))
        .route("/rooms/{rid}/event/{eid}", get(get_event))
        .route("/profile/{uid}", get(profile))
        .route(
            "/profile/{uid}/displayname",
            get(profile).put(set_displayname),
        )
        .route("/profile/{uid}/avatar_url", get(profile).put(set_avatar))
        .route(
            "/directory/room/{alias}",
            get(directory_get)
                .put(directory_put)
                .delete(directory_delete),
        );
    Router::new()
        .route("/_matrix/client/versions", get(versions))
        .nest("/_matrix/client/v3", cs.clone())
        .nest("/_matrix/client/r0", cs)
        .route("/_matrix/client/v1/appservice/{id}/ping", post(ping))
        .route("/_matrix/media/v3/upload", post(upload))
        .route("/_matrix/media/r0/upload", post(upload))
        .route(
            "/_matrix/client/v1/media/download/{server}/{id}",
            get(download),
        )
        .route(
            "/_matrix/client/v1/media/download/{server}/{id}/{name}",
            get(download_named),
        )
        .route("/_sim/hs/fail-push", post(sim_fail_push))
        .route("/_sim/hs/fail-cs", post(sim_fail_cs))
        .route("/_sim/hs/delay", post(sim_delay))
        .route("/_sim/hs/clear-faults", post(sim_clear))
        .route("/_sim/hs/refuse-connections", post(sim_refuse))
        .route("/_sim/hs/lose-answers", post(sim_lose_answers))
        .fallback(|State(app): State<App>, conn: ThisConn| async move {
            gated(&app, &conn, CsRoute::Unknown, async {
                error_response(&MatrixError::new(
                    404,
                    "M_UNRECOGNIZED",
                    "Unrecognized request",
                ))
            })
            .await
        })
        .method_not_allowed_fallback(|State(app): State<App>, conn: ThisConn| async move {
            gated(&app, &conn, CsRoute::Unknown, async {
                error_response(&MatrixError::new(
                    405,
                    "M_UNRECOGNIZED",
                    "Unrecognized request",
                ))
            })
            .await
        })
        .with_state(shared)
}

// ----------------------------------------------------------------------
// plumbing

fn json_response(status: u16, body: &Value) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut resp = (status, body.to_string()).into_response();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

fn error_response(e: &MatrixError) -> Response {
    json_response(e.status, &e.body())
}

fn query_param(raw: Option<&str>, key: &str) -> Option<String> {
    raw.and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.into_owned())
    })
}

/// `Authorization: Bearer`, or the `access_token` query parameter (Synapse still accepts
/// it, measured), but not both: Synapse refuses the mix with 401 `M_MISSING_TOKEN`
/// ("Mixing Authorization headers and access_token query parameters.").
fn extract_token(headers: &HeaderMap, query: Option<&str>) -> Result<Option<String>, MatrixError> {
    let header = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| t.trim().to_string());
    let query = query_param(query, "access_token");
    match (header, query) {
        (Some(_), Some(_)) => Err(MatrixError::new(
            401,
            "M_MISSING_TOKEN",
            "Mixing Authorization headers and access_token query parameters.",
        )),
        (header, query) => Ok(header.or(query)),
    }
}

/// Synapse `parse_json_object_from_request`: the body must be a JSON object;
/// `allow_empty` for endpoints whose body is optional (join, leave).
fn parse_json(body: &Bytes, allow_empty: bool) -> Result<Value, MatrixError> {
    if body.is_empty() && allow_empty {
        return Ok(json!({}));
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(v @ Value::Object(_)) => Ok(v),
        Ok(_) => Err(MatrixError::bad_json("Content must be a JSON object.")),
        Err(_) => Err(MatrixError::new(400, "M_NOT_JSON", "Content not JSON.")),
    }
}

/// Per-request context handed to handlers.
struct Ctx<'a> {
    path: &'a str,
    query: Option<&'a str>,
    now: u64,
}

impl Ctx<'_> {
    fn ts(&self) -> Option<u64> {
        query_param(self.query, "ts").and_then(|t| t.parse().ok())
    }
}

/// The gate of every Client-Server request: the injected delay (cut short
/// by clear-faults, so a long one cannot hold requests for ever), the
/// injected errors, then `work`, then the lost-answer fault for `route`.
/// Wakes the pusher afterwards.
async fn gated(
    app: &App,
    conn: &ThisConn,
    route: CsRoute,
    work: impl Future<Output = Response>,
) -> Response {
    let cleared = app.cleared.notified();
    tokio::pin!(cleared);
    // Registered before the delay is read: a clear in between still wakes us.
    cleared.as_mut().enable();
    let delay = app.lock().cs_delay();
    if !delay.is_zero() {
        // Counted while it waits, also when the client goes away meanwhile (hyper drops
        // this future then).
        struct Waiting<'a>(&'a std::sync::atomic::AtomicUsize);
        impl Drop for Waiting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
            }
        }
        app.delayed
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let _waiting = Waiting(&app.delayed);
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cleared => {}
        }
    }
    let now = app.clock.now_ms();
    if let Some(e) = app.lock().take_cs_fault(now) {
        return error_response(&e);
    }
    let resp = work.await;
    if app.lock().take_lost_answer(route) {
        tracing::debug!(?route, "fake hs: answer lost on purpose");
        conn.drop_answer();
    }
    app.notify.notify_one();
    resp
}

/// Synapse `auth.get_user_by_req`: the token, then `?user_id=` masquerading.
fn authenticate(state: &HsState, headers: &HeaderMap, uri: &Uri) -> Result<Requester, MatrixError> {
    let token = extract_token(headers, uri.query())?;
    let user_id = query_param(uri.query(), "user_id");
    state.authenticate(token.as_deref(), user_id.as_deref())
}

/// Run one authenticated CS call through the [`gated`] gate: auth with
/// `?user_id=` masquerading, then `f` under the lock.
async fn run_cs<F>(
    app: &App,
    conn: &ThisConn,
    route: CsRoute,
    headers: &HeaderMap,
    uri: &Uri,
    f: F,
) -> Response
where
    F: FnOnce(&mut HsState, &Requester, &Ctx<'_>) -> Result<Value, MatrixError>,
{
    gated(app, conn, route, async {
        let now = app.clock.now_ms();
        let mut state = app.lock();
        let req = match authenticate(&state, headers, uri) {
            Ok(r) => r,
            Err(e) => return error_response(&e),
        };
        let ctx = Ctx {
            path: uri.path(),
            query: uri.query(),
            now,
        };
        match f(&mut state, &req, &ctx) {
            Ok(v) => json_response(200, &v),
            Err(e) => error_response(&e),
        }
    })
    .await
}

// ----------------------------------------------------------------------
// handlers

async fn versions(State(app): State<App>, conn: ThisConn) -> Response {
    gated(&app, &conn, CsRoute::Versions, async {
        json_response(
            200,
            &json!({
                "versions": ["r0.5.0", "r0.6.0", "r0.6.1", "v1.1", "v1.2", "v1.3", "v1.4", "v1.5", "v1.6",
                              "v1.7", "v1.8", "v1.9", "v1.10", "v1.11", "v1.12"],
                "unstable_features": {}
            }),
        )
    })
    .await
}

/// Registration authenticates itself (the AS token is optional here).
async fn register(
    State(app): State<App>,
    conn: ThisConn,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    gated(&app, &conn, CsRoute::Register, async {
        let mut state = app.lock();
        let token = match extract_token(&headers, uri.query()) {
            Ok(t) => t,
            Err(e) => return error_response(&e),
        };
        match parse_json(&body, false).and_then(|b| state.register(token.as_deref(), &b)) {
            Ok(v) => json_response(200, &v),
            Err(e) => error_response(&e),
        }
    })
    .await
}

async fn whoami(State(app): State<App>, conn: ThisConn, headers: HeaderMap, uri: Uri) -> Response {
    run_cs(&app, &conn, CsRoute::Whoami, &headers, &uri, |s, r, _| {
        Ok(s.whoami(r))
    })
    .await
}

async fn create_room(
    State(app): State<App>,
    conn: ThisConn,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(
        &app,
        &conn,
        CsRoute::CreateRoom,
        &headers,
        &uri,
        |s, r, c| {
            let v = parse_json(&body, false)?;
            let req: CreateRoom = serde_json::from_value(v)
                .map_err(|e| MatrixError::bad_json(format!("Invalid createRoom body: {e}")))?;
            let rid = s.create_room(r, &req, c.now)?;
            Ok(json!({ "room_id": rid }))
        },
    )
    .await
}

async fn joined_rooms(
    State(app): State<App>,
    conn: ThisConn,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(
        &app,
        &conn,
        CsRoute::JoinedRooms,
        &headers,
        &uri,
        |s, r, _| Ok(s.joined_rooms(r.user_id())),
    )
    .await
}

async fn join_any(
    State(app): State<App>,
    conn: ThisConn,
    Path(room): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Join, &headers, &uri, |s, r, c| {
        parse_json(&body, true)?;
        let rid = s.join(r.user_id(), &room, c.now)?;
        Ok(json!({ "room_id": rid }))
    })
    .await
}

async fn join_room(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    join_any(State(app), conn, Path(rid), headers, uri, body).await
}

fn user_id_field(v: &Value) -> Result<String, MatrixError> {
    v.get("user_id")
        .and_then(Value::as_str)
        .map(str::to_string)
        .ok_or_else(|| MatrixError::new(400, "M_MISSING_PARAM", "Missing parameter: user_id"))
}

async fn invite(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Invite, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, false)?;
        let target = user_id_field(&v)?;
        s.invite(r.user_id(), &rid, &target, c.now)?;
        Ok(json!({}))
    })
    .await
}

async fn leave(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Leave, &headers, &uri, |s, r, c| {
        parse_json(&body, true)?;
        s.leave(r.user_id(), &rid, c.now)?;
        Ok(json!({}))
    })
    .await
}

async fn forget(State(app): State<App>, conn: ThisConn, headers: HeaderMap, uri: Uri) -> Response {
    run_cs(&app, &conn, CsRoute::Forget, &headers, &uri, |_, _, _| {
        Ok(json!({}))
    })
    .await
}

async fn kick(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Kick, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, false)?;
        let target = user_id_field(&v)?;
        let reason = v.get("reason").and_then(Value::as_str);
        s.kick(r.user_id(), &rid, &target, reason, c.now)?;
        Ok(json!({}))
    })
    .await
}

async fn send(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, kind, _txn)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Send, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, false)?;
        let eid = s.send(r, c.path, &rid, &kind, v, c.ts(), c.now)?;
        Ok(json!({ "event_id": eid }))
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn put_state_inner(
    app: App,
    conn: ThisConn,
    rid: String,
    kind: String,
    key: String,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::State, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, false)?;
        let eid = s.send_state(r, &rid, &kind, &key, v, c.ts(), c.now)?;
        Ok(json!({ "event_id": eid }))
    })
    .await
}

async fn put_state(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, kind, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    put_state_inner(app, conn, rid, kind, key, headers, uri, body).await
}

async fn put_state_nokey(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, kind)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    put_state_inner(app, conn, rid, kind, String::new(), headers, uri, body).await
}

async fn get_state(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, kind, key)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(&app, &conn, CsRoute::State, &headers, &uri, |s, r, _| {
        s.get_state(r.user_id(), &rid, &kind, &key)
    })
    .await
}

async fn get_state_nokey(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, kind)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(&app, &conn, CsRoute::State, &headers, &uri, |s, r, _| {
        s.get_state(r.user_id(), &rid, &kind, "")
    })
    .await
}

async fn redact(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, eid, _txn)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Redact, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, true)?;
        let reason = v.get("reason").and_then(Value::as_str);
        let new_id = s.redact(r, c.path, &rid, &eid, reason, c.now)?;
        Ok(json!({ "event_id": new_id }))
    })
    .await
}

async fn members(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(&app, &conn, CsRoute::Members, &headers, &uri, |s, r, c| {
        s.members(r.user_id(), &rid, c.now)
    })
    .await
}

async fn joined_members(
    State(app): State<App>,
    conn: ThisConn,
    Path(rid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(&app, &conn, CsRoute::Members, &headers, &uri, |s, r, _| {
        s.joined_members(r.user_id(), &rid)
    })
    .await
}

async fn get_event(
    State(app): State<App>,
    conn: ThisConn,
    Path((rid, eid)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    run_cs(&app, &conn, CsRoute::Event, &headers, &uri, |s, r, c| {
        s.get_event(r.user_id(), &rid, &eid, c.now)
    })
    .await
}

async fn profile(
    State(app): State<App>,
    conn: ThisConn,
    Path(uid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    let field = if uri.path().ends_with("/displayname") {
        Some("displayname")
    } else if uri.path().ends_with("/avatar_url") {
        Some("avatar_url")
    } else {
        None
    };
    run_cs(&app, &conn, CsRoute::Profile, &headers, &uri, |s, _, _| {
        let p = s.profile(&uid)?;
        Ok(match field {
            Some(f) => {
                let mut m = serde_json::Map::new();
                if let Some(v) = p.get(f) {
                    m.insert(f.into(), v.clone());
                }
                Value::Object(m)
            }
            None => p,
        })
    })
    .await
}

#[allow(clippy::too_many_arguments)]
async fn set_profile_field(
    app: App,
    conn: ThisConn,
    uid: String,
    field: &'static str,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    run_cs(&app, &conn, CsRoute::Profile, &headers, &uri, |s, r, c| {
        let v = parse_json(&body, false)?;
        let value = match v.get(field) {
            Some(Value::String(x)) => Some(x.as_str()),
            Some(Value::Null) | None => None,
            Some(_) => return Err(MatrixError::bad_json(format!("{field} must be a string"))),
        };
        s.set_profile(r, &uid, field, value, c.now)?;
        Ok(json!({}))
    })
    .await
}

async fn set_displayname(
    State(app): State<App>,
    conn: ThisConn,
    Path(uid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    set_profile_field(app, conn, uid, "displayname", headers, uri, body).await
}

async fn set_avatar(
    State(app): State<App>,
    conn: ThisConn,
    Path(uid): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    set_profile_field(app, conn, uid, "avatar_url", headers, uri, body).await
}

async fn upload(
    State(app): State<App>,
    conn: ThisConn,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("application/octet-stream")
        .to_string();
    run_cs(&app, &conn, CsRoute::Media, &headers, &uri, |s, _, _| {
        let mxc = s.upload(&ct, body.to_vec());
        Ok(json!({ "content_uri": mxc }))
    })
    .await
}

async fn download_inner(
    app: App,
    conn: ThisConn,
    server: String,
    id: String,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    gated(&app, &conn, CsRoute::Media, async {
        let state = app.lock();
        if let Err(e) = authenticate(&state, &headers, &uri) {
            return error_response(&e);
        }
        match state.media(&server, &id) {
            Some((ct, data)) => {
                let mut resp = (StatusCode::OK, data.clone()).into_response();
                if let Ok(v) = HeaderValue::from_str(ct) {
                    resp.headers_mut().insert(header::CONTENT_TYPE, v);
                }
                resp
            }
            None => error_response(&MatrixError::not_found("Not found")),
        }
    })
    .await
}

async fn download(
    State(app): State<App>,
    conn: ThisConn,
    Path((server, id)): Path<(String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    download_inner(app, conn, server, id, headers, uri).await
}

async fn download_named(
    State(app): State<App>,
    conn: ThisConn,
    Path((server, id, _name)): Path<(String, String, String)>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    download_inner(app, conn, server, id, headers, uri).await
}

/// Python's `urllib.parse.quote` (safe `/`), which Synapse uses for the
/// alias in the AS query path: `#` and `:` are escaped.
fn quote(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.-~/".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Synapse `query_room_alias_exists`: an unknown alias in the AS's alias
/// namespace is asked of the AS (`GET /_matrix/app/v1/rooms/{alias}`); only
/// a 2xx counts as "it exists now", anything else (404, an error, no AS url)
/// as not.
async fn ask_as_about_alias(app: &App, alias: &str) -> bool {
    let target = {
        let s = app.lock();
        if !s.alias_in_as_namespace(alias) {
            return false;
        }
        match s.config.registration.url.clone() {
            Some(url) => (url, s.config.registration.hs_token.clone()),
            None => return false,
        }
    };
    let (url, hs_token) = target;
    let result = app
        .http
        .get(format!(
            "{}/_matrix/app/v1/rooms/{}",
            url.trim_end_matches('/'),
            quote(alias)
        ))
        .bearer_auth(hs_token)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    matches!(result, Ok(r) if r.status().is_success())
}

/// `GET /directory/room/{roomAlias}`: no authentication in Synapse (a token
/// is not even read).
async fn directory_get(
    State(app): State<App>,
    conn: ThisConn,
    Path(alias): Path<String>,
) -> Response {
    gated(&app, &conn, CsRoute::Directory, async {
        let mut answer = app.lock().get_alias(&alias);
        if answer.as_ref().is_err_and(|e| e.status == 404) && ask_as_about_alias(&app, &alias).await
        {
            answer = app.lock().get_alias(&alias);
        }
        match answer {
            Ok(v) => json_response(200, &v),
            Err(e) => error_response(&e),
        }
    })
    .await
}

/// `PUT /directory/room/{roomAlias}` `{"room_id"}`: Synapse checks the alias,
/// the body and the room before it authenticates.
async fn directory_put(
    State(app): State<App>,
    conn: ThisConn,
    Path(alias): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    gated(&app, &conn, CsRoute::Directory, async {
        let mut state = app.lock();
        let answer = check_alias_syntax(&alias)
            .and_then(|()| parse_json(&body, false))
            .and_then(|v| state.check_put_alias(&alias, &v))
            .and_then(|room| {
                let req = authenticate(&state, &headers, &uri)?;
                state.put_alias(&req, &alias, &room)
            });
        match answer {
            Ok(()) => json_response(200, &json!({})),
            Err(e) => error_response(&e),
        }
    })
    .await
}

/// `DELETE /directory/room/{roomAlias}`: the alias's syntax before the auth.
async fn directory_delete(
    State(app): State<App>,
    conn: ThisConn,
    Path(alias): Path<String>,
    headers: HeaderMap,
    uri: Uri,
) -> Response {
    gated(&app, &conn, CsRoute::Directory, async {
        let now = app.clock.now_ms();
        let mut state = app.lock();
        let answer = check_alias_syntax(&alias)
            .and_then(|()| authenticate(&state, &headers, &uri))
            .and_then(|req| state.delete_alias(&req, &alias, now));
        match answer {
            Ok(()) => json_response(200, &json!({})),
            Err(e) => error_response(&e),
        }
    })
    .await
}

/// `POST /_matrix/client/v1/appservice/{id}/ping`: the HS calls the AS's
/// `/_matrix/app/v1/ping` and reports how it went (spec v1.7; Synapse codes).
async fn ping(
    State(app): State<App>,
    conn: ThisConn,
    Path(id): Path<String>,
    headers: HeaderMap,
    uri: Uri,
    body: Bytes,
) -> Response {
    gated(
        &app,
        &conn,
        CsRoute::Ping,
        ping_inner(&app, id, headers, uri, body),
    )
    .await
}

async fn ping_inner(app: &App, id: String, headers: HeaderMap, uri: Uri, body: Bytes) -> Response {
    let checked = {
        let state = app.lock();
        authenticate(&state, &headers, &uri)
            .and_then(|r| state.check_ping(&r, &id))
            .map(|url| (url, state.config.registration.hs_token.clone()))
    };
    let (url, hs_token) = match checked {
        Ok(x) => x,
        Err(e) => return error_response(&e),
    };
    let body = match parse_json(&body, true) {
        Ok(b) => b,
        Err(e) => return error_response(&e),
    };
    let mut ping_body = json!({});
    if let Some(t) = body.get("transaction_id") {
        ping_body["transaction_id"] = t.clone();
    }
    let started = Instant::now();
    let result = app
        .http
        .post(format!("{}/_matrix/app/v1/ping", url.trim_end_matches('/')))
        .bearer_auth(hs_token)
        .json(&ping_body)
        .timeout(Duration::from_secs(10))
        .send()
        .await;
    match result {
        Ok(resp) if resp.status().is_success() => json_response(
            200,
            &json!({ "duration_ms": started.elapsed().as_millis() as u64 }),
        ),
        Ok(resp) => {
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap_or_default();
            error_response(
                &MatrixError::new(502, "M_BAD_STATUS", "Ping returned error status")
                    .with("status", json!(status))
                    .with("body", json!(text)),
            )
        }
        Err(e) if e.is_timeout() => error_response(&MatrixError::new(
            504,
            "M_CONNECTION_TIMEOUT",
            "Connection to application service timed out",
        )),
        Err(_) => error_response(&MatrixError::new(
            502,
            "M_CONNECTION_FAILED",
            "Failed to connect to application service",
        )),
    }
}

// ----------------------------------------------------------------------
// simulator controls

#[derive(Debug, Deserialize)]
struct FailPush {
    count: u32,
}

async fn sim_fail_push(State(app): State<App>, axum::Json(req): axum::Json<FailPush>) -> Response {
    app.lock().fail_push_next(req.count);
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct FailCs {
    status: u16,
    count: Option<u32>,
    duration_ms: Option<u64>,
}

async fn sim_fail_cs(State(app): State<App>, axum::Json(req): axum::Json<FailCs>) -> Response {
    let now = app.clock.now_ms();
    let mut s = app.lock();
    match (req.count, req.duration_ms) {
        (_, Some(ms)) => s.fail_cs_until(now + ms, req.status),
        (n, None) => s.fail_cs_next(n.unwrap_or(1), req.status),
    }
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct DelayReq {
    ms: u64,
}

async fn sim_delay(State(app): State<App>, axum::Json(req): axum::Json<DelayReq>) -> Response {
    app.lock().set_cs_delay(Duration::from_millis(req.ms));
    json_response(200, &json!({}))
}

async fn sim_clear(State(app): State<App>) -> Response {
    app.clear_faults();
    json_response(200, &json!({}))
}

#[derive(Debug, Deserialize)]
struct RefuseReq {
    duration_ms: u64,
}

/// Answered once the listening socket is closed, so the caller's next
/// connect is refused; this connection itself answers and then closes (the
/// others are cut at once).
async fn sim_refuse(
    State(app): State<App>,
    conn: ThisConn,
    axum::Json(req): axum::Json<RefuseReq>,
) -> Response {
    app.net
        .refuse_for(Duration::from_millis(req.duration_ms), conn.id())
        .await;
    let mut resp = json_response(200, &json!({}));
    resp.headers_mut()
        .insert(header::CONNECTION, HeaderValue::from_static("close"));
    resp
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LoseReq {
    #[serde(default = "one")]
    count: u32,
    #[serde(default = "sends")]
    routes: Vec<CsRoute>,
}

fn one() -> u32 {
    1
}

fn sends() -> Vec<CsRoute> {
    vec![CsRoute::Send]
}

async fn sim_lose_answers(
    State(app): State<App>,
    axum::Json(req): axum::Json<LoseReq>,
) -> Response {
    app.lock().lose_answers(req.count, req.routes);
    json_response(200, &json!({}))
}

// ----------------------------------------------------------------------
// the pusher

/// Push queued events to the AS like Synapse's scheduler: one transaction in
/// flight, ids "1", "2", ..., the same id and events on every retry, and
/// exponential backoff (base doubling up to the cap) while it fails.
pub async fn run_pusher(app: App) {
    let (base, max) = {
        let s = app.lock();
        (s.config.push_backoff_base, s.config.push_backoff_max)
    };
    let mut backoff = base;
    loop {
        let job = {
            let mut s = app.lock();
            match s.config.registration.url.clone() {
                None => None,
                Some(url) => s.next_transaction().map(|t| {
                    let body = s.transaction_body(&t);
                    let fault = s.take_push_fault();
                    (url, s.config.registration.hs_token.clone(), t, body, fault)
                }),
            }
        };
        let Some((url, hs_token, txn, body, fault)) = job else {
            let _ = tokio::time::timeout(Duration::from_millis(50), app.notify.notified()).await;
            continue;
        };
        let ok = if fault {
            tracing::debug!(txn = %txn.txn_id, "fake hs: injected push failure");
            false
        } else {
            let target = format!(
                "{}/_matrix/app/v1/transactions/{}",
                url.trim_end_matches('/'),
                txn.txn_id
            );
            match app
                .http
                .put(&target)
                .bearer_auth(&hs_token)
                .json(&body)
                .timeout(Duration::from_secs(30))
                .send()
                .await
            {
                Ok(r) if r.status().is_success() => true,
                Ok(r) => {
                    tracing::debug!(txn = %txn.txn_id, status = r.status().as_u16(), "fake hs: AS refused transaction");
                    false
                }
                Err(e) => {
                    tracing::debug!(txn = %txn.txn_id, error = %e, "fake hs: AS unreachable");
                    false
                }
            }
        };
        app.lock().record_push(&txn.txn_id, ok);
        if ok {
            backoff = base;
        } else {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(max);
        }
    }
}
