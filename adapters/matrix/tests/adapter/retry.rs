//! Retries: rate limits honour the homeserver's wait, 5xx and network errors back off, and
//! every retry loop is bounded (fast_retry: 3 retries, so 4 attempts).

use std::time::{Duration, Instant};

use gitter_bridge_core::{Action, EffectId, FailureKind, MatrixCall};
use gitter_bridge_matrix::{MatrixClient, MatrixError};
use serde_json::json;
use wiremock::ResponseTemplate;

use crate::helpers::*;

fn join_path() -> String {
    format!("/_matrix/client/v3/rooms/{ROOM_ENCODED}/join")
}

fn ghost_join() -> Action {
    Action::Matrix(MatrixCall::Join {
        room: room(ROOM),
        user: user(GHOST),
    })
}

/// The first `n` calls get `first`, later ones `then`.
async fn answer_first_then(
    hs: &wiremock::MockServer,
    n: u64,
    first: ResponseTemplate,
    then: ResponseTemplate,
) {
    expect_call("POST", &join_path())
        .respond_with(first)
        .up_to_n_times(n)
        .with_priority(1)
        .expect(n)
        .mount(hs)
        .await;
    expect_call("POST", &join_path())
        .respond_with(then)
        .with_priority(2)
        .expect(1)
        .mount(hs)
        .await;
}

fn joined() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_json(json!({ "room_id": ROOM }))
}

#[tokio::test]
async fn rate_limit_waits_retry_after_ms_then_succeeds() {
    let (hs, client) = homeserver().await;
    let limited = ResponseTemplate::new(429).set_body_json(json!({
        "errcode": "M_LIMIT_EXCEEDED", "error": "Too many requests", "retry_after_ms": 40,
    }));
    answer_first_then(&hs, 1, limited, joined()).await;
    let start = Instant::now();
    client.join(&room(ROOM), &user(GHOST)).await.unwrap();
    assert!(
        start.elapsed() >= Duration::from_millis(40),
        "waited only {:?}",
        start.elapsed()
    );
}

#[tokio::test]
async fn rate_limit_honours_retry_after_header_capped_by_policy() {
    let (hs, client) = homeserver().await;
    // Retry-After: 30 s, capped by the policy's max_retry_after (50 ms in tests).
    let limited = ResponseTemplate::new(429)
        .insert_header("retry-after", "30")
        .set_body_json(json!({ "errcode": "M_LIMIT_EXCEEDED", "error": "slow down" }));
    answer_first_then(&hs, 1, limited, joined()).await;
    let start = Instant::now();
    client.join(&room(ROOM), &user(GHOST)).await.unwrap();
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(50),
        "waited only {waited:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "cap not applied: {waited:?}"
    );
}

#[tokio::test]
async fn server_errors_are_retried_until_success() {
    let (hs, client) = homeserver().await;
    let failing = ResponseTemplate::new(502).set_body_string("<html>Bad Gateway</html>");
    answer_first_then(&hs, 2, failing, joined()).await;
    let out = client.execute(EffectId(1), &ghost_join()).await;
    assert!(out.is_ok(), "{out:?}");
}

#[tokio::test]
async fn server_errors_give_up_after_the_bound_as_transient() {
    let (hs, client) = homeserver().await;
    expect_call("POST", &join_path())
        .respond_with(
            ResponseTemplate::new(500)
                .set_body_json(json!({ "errcode": "M_UNKNOWN", "error": "boom" })),
        )
        .expect(4)
        .mount(&hs)
        .await;
    let failure = client
        .execute(EffectId(1), &ghost_join())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Transient);
}

#[tokio::test]
async fn endless_rate_limiting_gives_up_as_rate_limited() {
    let (hs, client) = homeserver().await;
    expect_call("POST", &join_path())
        .respond_with(ResponseTemplate::new(429).set_body_json(json!({
            "errcode": "M_LIMIT_EXCEEDED", "error": "no", "retry_after_ms": 1,
        })))
        .expect(4)
        .mount(&hs)
        .await;
    let failure = client
        .execute(EffectId(1), &ghost_join())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::RateLimited);
}

#[tokio::test]
async fn client_errors_are_not_retried() {
    let (hs, client) = homeserver().await;
    expect_call("POST", &join_path())
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(json!({ "errcode": "M_FORBIDDEN", "error": "not invited" })),
        )
        .expect(1)
        .mount(&hs)
        .await;
    let failure = client
        .execute(EffectId(1), &ghost_join())
        .await
        .unwrap_err();
    assert_eq!(failure.kind, FailureKind::Forbidden);
}

#[tokio::test]
async fn an_unreachable_homeserver_is_a_transient_network_failure() {
    // A port that was just free: connections are refused.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let client = MatrixClient::new(client_config(&format!("http://127.0.0.1:{port}"))).unwrap();
    let err = client.join(&room(ROOM), &user(GHOST)).await.unwrap_err();
    assert!(matches!(err, MatrixError::Network { .. }), "{err:?}");
    assert_eq!(err.to_failure().kind, FailureKind::Transient);
}
