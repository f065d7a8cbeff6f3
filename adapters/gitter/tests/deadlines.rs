//! Every outside call has a deadline (issue 12: a token endpoint that never answered held a
//! user's lane for more than 137 s). Against loopback servers that never answer or never
//! finish; the tests assert that a call ended with the right error, never how long it took.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_core::{Action, FailureKind, Secret};
use gitter_bridge_gitter::{DEFAULT_MAX_BODY_BYTES, GitterConfig, OAuthConfig};

/// Short enough for a quick test, long enough for a loaded machine's loopback.
const DEADLINE: Duration = Duration::from_millis(300);
/// How long a test waits before calling the deadline missing.
const GIVE_UP: Duration = Duration::from_secs(20);

fn exchange() -> Action {
    Action::OAuth {
        code: Secret::new("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    }
}

#[tokio::test]
async fn a_token_endpoint_that_never_answers_fails_by_the_deadline() {
    let server = RawServer::start(Raw::Hang).await;
    let client = server.client(|c| c.request_timeout = Some(DEADLINE));

    let failure = ends_within(GIVE_UP, client.execute(&exchange()))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.message.contains("timed out"), "{}", failure.message);
    assert_eq!(server.connections(), 1, "a code is single-use: not retried");
}

#[tokio::test]
async fn a_token_answer_that_never_ends_fails_by_the_deadline() {
    // The head comes, the body stops half-way: the deadline covers the body too.
    let server = RawServer::start(Raw::SendThenHang(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 80\r\n\r\n\
         {\"access_token\":",
    ))
    .await;
    let client = server.client(|c| c.request_timeout = Some(DEADLINE));

    let failure = ends_within(GIVE_UP, client.execute(&exchange()))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(!failure.message.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn a_rest_answer_that_never_ends_fails_by_the_deadline() {
    let server = RawServer::start(Raw::SendThenHang(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 100\r\n\r\n[{",
    ))
    .await;
    let client = server.client(|c| c.request_timeout = Some(DEADLINE));

    let err = ends_within(GIVE_UP, client.rooms(&token(), None))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.connections(), 3, "a read is retried");
}

#[tokio::test]
async fn a_rest_server_that_never_answers_fails_by_the_deadline() {
    let server = RawServer::start(Raw::Hang).await;
    let client = server.client(|c| c.request_timeout = Some(DEADLINE));

    let err = ends_within(GIVE_UP, client.current_user(&token()))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
}

#[test]
fn the_defaults_put_a_deadline_and_a_size_limit_on_every_call() {
    let url = |s: &str| s.parse().unwrap();
    let c = GitterConfig::new(
        url("https://api.gitter.im"),
        url("https://stream.gitter.im"),
        OAuthConfig {
            authorize_url: url("https://gitter.im/login/oauth/authorize"),
            token_url: url("https://gitter.im/login/oauth/token"),
            client_id: "id".to_owned(),
            client_secret: Secret::new("secret"),
            redirect_uri: url("https://bridge.example.org/oauth/callback"),
        },
    );

    assert_eq!(c.connect_timeout, Some(Duration::from_secs(10)));
    assert_eq!(c.request_timeout, Some(Duration::from_secs(30)));
    assert_eq!(c.stream.answer_timeout, Duration::from_secs(30));
    assert_eq!(c.stream.idle_timeout, Duration::from_secs(120));
    assert_eq!(c.stream.stable_after, Duration::from_secs(30));
    assert_eq!(c.max_body_bytes, DEFAULT_MAX_BODY_BYTES);
    assert_eq!(DEFAULT_MAX_BODY_BYTES, 8 * 1024 * 1024);
}
