//! The one place for test constants, builders and fakes.

use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use gitter_bridge_core::{OwnedRoomId, OwnedUserId, Secret};
use gitter_bridge_matrix::{
    AsServer, AsServerConfig, ClientConfig, MatrixClient, RetryPolicy, TransactionSource,
    transaction_channel, user_namespace_regexes,
};
use serde_json::Value;
use tower::ServiceExt;
use url::Url;
use wiremock::matchers::{header, method, path, query_param, query_param_is_missing};
use wiremock::{Mock, MockBuilder, MockServer};

pub const SERVER_NAME: &str = "example.org";
pub const BOT: &str = "@gitterbot:example.org";
pub const GHOST: &str = "@gitter_bob:example.org";
pub const ALICE: &str = "@alice:example.org";
/// A room version 12 id: no server part.
pub const ROOM: &str = "!CAey79Ay3Oizokol3wpj41pVDWUFrx1jn9l0-zPZA68";
/// [`ROOM`] as one percent-encoded path segment.
pub const ROOM_ENCODED: &str = "%21CAey79Ay3Oizokol3wpj41pVDWUFrx1jn9l0-zPZA68";
pub const AS_TOKEN: &str = "as_token_test_0123456789";
pub const HS_TOKEN: &str = "hs_token_test_0123456789";

pub fn user(s: &str) -> OwnedUserId {
    OwnedUserId::try_from(s).expect("valid user id")
}

pub fn room(s: &str) -> OwnedRoomId {
    OwnedRoomId::try_from(s).expect("valid room id")
}

/// A fixture from `fixtures/matrix/`.
pub fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../../fixtures/matrix/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("cannot read {path}: {e}"))
}

pub fn fixture_json(name: &str) -> Value {
    serde_json::from_slice(&fixture(name)).expect("fixture is JSON")
}

/// Retries fast enough for tests, still bounded.
pub fn fast_retry() -> RetryPolicy {
    RetryPolicy {
        max_retries: 3,
        min_delay: Duration::from_millis(1),
        max_delay: Duration::from_millis(5),
        max_retry_after: Duration::from_millis(50),
    }
}

pub fn client_config(base: &str) -> ClientConfig {
    let mut config = ClientConfig::new(
        Url::parse(base).expect("url"),
        Secret::new(AS_TOKEN),
        user(BOT),
        "gitter",
    );
    config.retry = fast_retry();
    config.request_timeout = Duration::from_secs(5);
    config
}

/// A fake homeserver and a client pointed at it.
pub async fn homeserver() -> (MockServer, MatrixClient) {
    let server = MockServer::start().await;
    let client = MatrixClient::new(client_config(&server.uri())).expect("client");
    (server, client)
}

/// A mock for a call that must carry the as_token as a bearer header (never in the query).
pub fn expect_call(http_method: &str, p: &str) -> MockBuilder {
    Mock::given(method(http_method))
        .and(path(p))
        .and(header(
            "authorization",
            format!("Bearer {AS_TOKEN}").as_str(),
        ))
        .and(query_param_is_missing("access_token"))
}

/// Identity assertion expectations.
pub trait Identity {
    /// Sent as the bot: no `user_id`.
    fn sent_as_bot(self) -> Self;
    /// Sent as `user` with `?user_id=`.
    fn sent_as(self, user: &str) -> Self;
}

impl Identity for MockBuilder {
    fn sent_as_bot(self) -> Self {
        self.and(query_param_is_missing("user_id"))
    }
    fn sent_as(self, user: &str) -> Self {
        self.and(query_param("user_id", user))
    }
}

pub fn server_config() -> AsServerConfig {
    let [bot, ghosts] =
        user_namespace_regexes(SERVER_NAME, "gitterbot", "gitter_{username}").expect("namespace");
    AsServerConfig {
        hs_token: Secret::new(HS_TOKEN),
        bot: user(BOT),
        user_namespace: vec![
            regex::Regex::new(&bot).unwrap(),
            regex::Regex::new(&ghosts).unwrap(),
        ],
        body_limit: gitter_bridge_matrix::DEFAULT_BODY_LIMIT,
    }
}

/// The AS router and the driver's end of its transaction channel.
pub fn as_router() -> (Router, TransactionSource) {
    as_router_with(server_config(), None)
}

pub fn as_router_with(
    config: AsServerConfig,
    client: Option<MatrixClient>,
) -> (Router, TransactionSource) {
    let (sink, source) = transaction_channel(8);
    let mut server = AsServer::new(config, sink);
    if let Some(client) = client {
        server = server.with_client(client);
    }
    (server.router(), source)
}

/// How a request to the AS authenticates.
#[derive(Clone, Copy)]
pub enum Auth<'a> {
    None,
    Bearer(&'a str),
    Query(&'a str),
}

pub fn request(
    http_method: &str,
    uri: &str,
    auth: Auth<'_>,
    body: impl Into<Body>,
) -> Request<Body> {
    let uri = match auth {
        Auth::Query(token) => {
            let sep = if uri.contains('?') { '&' } else { '?' };
            format!("{uri}{sep}access_token={token}")
        }
        _ => uri.to_owned(),
    };
    let mut builder = Request::builder()
        .method(http_method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Auth::Bearer(token) = auth {
        builder = builder.header("authorization", format!("Bearer {token}"));
    }
    builder.body(body.into()).expect("request")
}

/// Sends one request through the router: status and JSON body.
pub async fn send(router: &Router, req: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(req).await.expect("infallible");
    let status = response.status();
    let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .expect("body");
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    (status, body)
}

/// A driver that acknowledges every transaction with `result`, returning what it saw.
pub fn spawn_driver(
    mut source: TransactionSource,
    result: Result<(), String>,
) -> tokio::task::JoinHandle<Vec<gitter_bridge_matrix::AsTransaction>> {
    tokio::spawn(async move {
        let mut seen = Vec::new();
        while let Some(txn) = source.recv().await {
            let (ack, rest) = split_ack(txn);
            let _ = ack.send(result.clone());
            seen.push(rest);
        }
        seen
    })
}

/// Takes the ack out of a transaction, leaving a record of it with a dead ack.
fn split_ack(
    txn: gitter_bridge_matrix::AsTransaction,
) -> (
    tokio::sync::oneshot::Sender<Result<(), String>>,
    gitter_bridge_matrix::AsTransaction,
) {
    let (dead, _) = tokio::sync::oneshot::channel();
    let gitter_bridge_matrix::AsTransaction {
        txn_id,
        events,
        ack,
    } = txn;
    (
        ack,
        gitter_bridge_matrix::AsTransaction {
            txn_id,
            events,
            ack: dead,
        },
    )
}

pub fn errcode(body: &Value) -> &str {
    body["errcode"].as_str().unwrap_or("<none>")
}
