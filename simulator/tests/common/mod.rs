//! Shared helpers for the HTTP-level tests: servers on 127.0.0.1:0, a
//! reqwest client, and a tiny application-service receiver.

#![allow(dead_code)]

pub mod raw;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::{post, put};
use gitter_bridge_sim::fake_gitter::{FakeGitter, GitterConfig, GitterSeed};
use gitter_bridge_sim::fake_hs::{FakeHomeserver, HsConfig, HsState, Registration};
use serde_json::Value;

pub const ALICE_TOKEN: &str = "a11ce0000000000000000000000000000000a11c";
pub const BOB_TOKEN: &str = "b0b0000000000000000000000000000000000b0b";
pub const AS_TOKEN: &str = "as_token_test";
pub const HS_TOKEN: &str = "hs_token_test";
pub const BOT: &str = "@_gitter_bot:localhost";

pub fn any_port() -> SocketAddr {
    "127.0.0.1:0".parse().expect("valid address")
}

pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client builds")
}

/// `GET url` with a bearer token; the status and the JSON body (`Null` when not JSON).
pub async fn get_json(url: impl reqwest::IntoUrl, token: &str) -> (u16, Value) {
    answer(client().get(url).bearer_auth(token)).await
}

/// `method url` with a bearer token and a JSON body; the status and the JSON answer.
pub async fn send_json(
    method: reqwest::Method,
    url: impl reqwest::IntoUrl,
    token: &str,
    body: Value,
) -> (u16, Value) {
    answer(client().request(method, url).bearer_auth(token).json(&body)).await
}

async fn answer(request: reqwest::RequestBuilder) -> (u16, Value) {
    let r = request.send().await.expect("the request is sent");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

/// alice (admin) and bob in `org/room`, carol outside, alice and bob with
/// personal tokens.
pub const SEED: &str = r#"
[[users]]
username = "alice"
token = "a11ce0000000000000000000000000000000a11c"
[[users]]
username = "bob"
token = "b0b0000000000000000000000000000000000b0b"
[[users]]
username = "carol"
[[rooms]]
uri = "org/room"
members = ["alice", "bob"]
admins = ["alice"]
"#;

pub async fn gitter_with(config: GitterConfig) -> FakeGitter {
    let seed = GitterSeed::from_toml(SEED).expect("seed parses");
    let state = FakeGitter::seeded_state(config, &seed).expect("seed applies");
    FakeGitter::spawn(any_port(), state).await.expect("binds")
}

pub async fn gitter() -> FakeGitter {
    gitter_with(GitterConfig::default()).await
}

pub fn registration(as_url: Option<&str>) -> Registration {
    let url = as_url.map_or("null".to_string(), |u| format!("\"{u}\""));
    Registration::from_yaml(&format!(
        r##"
id: gitter
url: {url}
as_token: "{AS_TOKEN}"
hs_token: "{HS_TOKEN}"
sender_localpart: "_gitter_bot"
namespaces:
  users: [{{exclusive: true, regex: "@_gitter_.*:localhost"}}]
  aliases: [{{exclusive: true, regex: "#_gitter_.*:localhost"}}]
"##
    ))
    .expect("registration parses")
}

pub async fn homeserver(as_url: Option<&str>) -> FakeHomeserver {
    let mut config = HsConfig::new("localhost", registration(as_url));
    config.push_backoff_base = Duration::from_millis(20);
    config.push_backoff_max = Duration::from_millis(100);
    FakeHomeserver::spawn(any_port(), HsState::new(config).expect("state"))
        .await
        .expect("binds")
}

/// What the AS receiver saw: (txn id, Authorization header, body) per request.
#[derive(Debug, Default)]
pub struct Received {
    pub transactions: Vec<(String, Option<String>, Value)>,
    pub pings: Vec<Value>,
    /// `GET /_matrix/app/v1/rooms/{alias}`: the raw path and Authorization.
    pub alias_queries: Vec<(String, Option<String>)>,
    pub fail_first: usize,
}

pub type Recorder = Arc<Mutex<Received>>;

/// A minimal AS: records every transaction and answers 500 to the first
/// `fail_first` of them, 200 `{}` afterwards. Returns its base URL.
pub async fn as_receiver(fail_first: usize) -> (String, Recorder) {
    let rec: Recorder = Arc::new(Mutex::new(Received {
        fail_first,
        ..Received::default()
    }));
    async fn txn(
        State(rec): State<Recorder>,
        Path(id): Path<String>,
        headers: HeaderMap,
        axum::Json(body): axum::Json<Value>,
    ) -> (StatusCode, &'static str) {
        let mut r = rec.lock().expect("lock");
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        r.transactions.push((id, auth, body));
        if r.transactions.len() <= r.fail_first {
            (StatusCode::INTERNAL_SERVER_ERROR, "{}")
        } else {
            (StatusCode::OK, "{}")
        }
    }
    async fn ping(
        State(rec): State<Recorder>,
        axum::Json(body): axum::Json<Value>,
    ) -> &'static str {
        rec.lock().expect("lock").pings.push(body);
        "{}"
    }
    /// Knows no alias, as the bridge claims none yet.
    async fn alias(
        State(rec): State<Recorder>,
        uri: axum::http::Uri,
        headers: HeaderMap,
    ) -> (StatusCode, &'static str) {
        let auth = headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        rec.lock()
            .expect("lock")
            .alias_queries
            .push((uri.path().to_string(), auth));
        (StatusCode::NOT_FOUND, r#"{"errcode":"M_NOT_FOUND"}"#)
    }
    let app = Router::new()
        .route("/_matrix/app/v1/transactions/{id}", put(txn))
        .route("/_matrix/app/v1/ping", post(ping))
        .route("/_matrix/app/v1/rooms/{alias}", axum::routing::get(alias))
        .with_state(rec.clone());
    let listener = tokio::net::TcpListener::bind(any_port())
        .await
        .expect("binds");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (format!("http://{addr}"), rec)
}

/// Poll `pred` every 20 ms for up to `secs` seconds.
pub async fn eventually(secs: u64, mut pred: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if pred() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    pred()
}
