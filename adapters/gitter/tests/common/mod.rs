//! Shared helpers of the integration tests: fixtures, a client pointed at a mock Gitter, and
//! assertions on what the mock received.

#![allow(dead_code)] // each test binary uses its own subset

use std::path::PathBuf;
use std::time::Duration;

use gitter_bridge_core::Secret;
use gitter_bridge_gitter::{GitterClient, GitterConfig, OAuthConfig, RetryConfig};
use wiremock::{MockServer, Request, ResponseTemplate};

/// A made-up token, shaped like Gitter's (40 hex chars).
pub const TOKEN: &str = "0123456789abcdef0123456789abcdef01234567";
/// The OAuth client secret of the test app.
pub const CLIENT_SECRET: &str = "client-secret-0000000000000000000000000";

pub fn token() -> Secret {
    Secret::new(TOKEN)
}

/// The directory of recorded Gitter payloads.
pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/gitter")
}

/// A fixture file's text.
pub fn fixture(name: &str) -> String {
    let path = fixtures_dir().join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A fixture parsed as JSON.
pub fn fixture_json(name: &str) -> serde_json::Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// A 200 answer with a fixture as its JSON body.
pub fn ok_fixture(name: &str) -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_raw(fixture(name), "application/json")
}

/// An error answer with a fixture as its JSON body.
pub fn error_fixture(status: u16, name: &str) -> ResponseTemplate {
    ResponseTemplate::new(status).set_body_raw(fixture(name), "application/json")
}

/// A configuration for a fake Gitter at `base` (REST, stream and OAuth on one server), with
/// quick, jitter-free retries so tests stay short.
pub fn config(base: &str) -> GitterConfig {
    let url = |p: &str| format!("{base}{p}").parse().unwrap();
    let oauth = OAuthConfig {
        authorize_url: url("/login/oauth/authorize"),
        token_url: url("/login/oauth/token"),
        client_id: "client-key".to_owned(),
        client_secret: Secret::new(CLIENT_SECRET),
        redirect_uri: "http://bridge.test/oauth/callback".parse().unwrap(),
    };
    let mut c = GitterConfig::new(base.parse().unwrap(), base.parse().unwrap(), oauth);
    c.retry = RetryConfig {
        max_attempts: 3,
        min_delay: Duration::from_millis(10),
        max_delay: Duration::from_millis(100),
        max_elapsed: Duration::from_secs(10),
        rate_limited_wait: Duration::from_millis(50),
        jitter: false,
    };
    c
}

/// The same, for tests on tokio's paused clock. The paused clock jumps to the next timer
/// whenever the runtime waits for I/O, so no timer may be pending during a request: no
/// request or connect time limits, and no idle-connection reaper.
pub fn paused_config(base: &str) -> GitterConfig {
    let mut c = config(base);
    c.request_timeout = None;
    c.connect_timeout = None;
    c.pool_idle_timeout = None;
    c
}

/// A mock Gitter and a client pointed at it.
pub async fn gitter() -> (MockServer, GitterClient) {
    let server = MockServer::start().await;
    let client = GitterClient::new(config(&server.uri())).unwrap();
    (server, client)
}

/// Every request the mock received.
pub async fn requests(server: &MockServer) -> Vec<Request> {
    server.received_requests().await.unwrap_or_default()
}

/// The one request the mock received.
pub async fn only_request(server: &MockServer) -> Request {
    let mut all = requests(server).await;
    assert_eq!(
        all.len(),
        1,
        "expected exactly one request, got {}",
        all.len()
    );
    all.pop().unwrap()
}

/// Asserts the conventions of gitter-api.md §1.2 on one request: bearer auth, JSON accepted,
/// and for writes a Content-Length that matches the body (never chunked).
pub fn assert_conventions(req: &Request) {
    let header = |n: &str| req.headers.get(n).map(|v| v.to_str().unwrap().to_owned());
    assert_eq!(
        header("authorization").as_deref(),
        Some(&*format!("Bearer {TOKEN}"))
    );
    assert_eq!(header("accept").as_deref(), Some("application/json"));
    assert!(
        header("transfer-encoding").is_none(),
        "chunked request body"
    );
    if req.method != "GET" {
        let len = header("content-length").expect("Content-Length on a write");
        assert_eq!(len, req.body.len().to_string());
    }
}

/// Asserts method, path and (when given) JSON body of a request, plus the conventions.
pub fn assert_request(req: &Request, method: &str, path: &str, body: Option<serde_json::Value>) {
    assert_eq!(req.method.as_str(), method);
    assert_eq!(req.url.path(), path);
    if let Some(body) = body {
        assert_eq!(req.body_json::<serde_json::Value>().unwrap(), body);
        assert_eq!(
            req.headers
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json")
        );
    }
    assert_conventions(req);
}

/// A query parameter of a request.
pub fn query(req: &Request, name: &str) -> Option<String> {
    req.url
        .query_pairs()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// Every `message-*.json` fixture.
pub fn message_fixtures() -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            (name.starts_with("message-") && name.ends_with(".json")).then_some(name)
        })
        .map(|name| {
            let text = fixture(&name);
            (name, text)
        })
        .collect();
    out.sort();
    assert!(out.len() >= 6, "message fixtures missing");
    out
}

/// A fixture re-serialised on one line, the way the stream sends it (§5.1).
pub fn one_line(json_text: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(json_text).unwrap();
    serde_json::to_string(&v).unwrap()
}
