//! Rate limits and retries on tokio's paused clock (docs/gitter-api.md §8): waits are asserted on
//! virtual time, so these tests take milliseconds of wall time.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_core::FailureKind;
use gitter_bridge_gitter::{GitterClient, GitterConfig, RateLimitConfig};
use tokio::time::Instant;
use wiremock::matchers::path;
use wiremock::{Mock, MockServer, ResponseTemplate};

const ROOMS: &str = "/v1/user/me/rooms";

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// A mock Gitter and a paused-clock client, configured by `tweak`.
async fn setup(tweak: impl FnOnce(&mut GitterConfig)) -> (MockServer, GitterClient) {
    let server = MockServer::start().await;
    let mut config = paused_config(&server.uri());
    tweak(&mut config);
    (server, GitterClient::new(config).unwrap())
}

fn rooms_ok() -> ResponseTemplate {
    ResponseTemplate::new(200).set_body_string("[]")
}

#[tokio::test(start_paused = true)]
async fn requests_beyond_the_limit_wait_for_the_next_window() {
    let (server, client) = setup(|c| {
        c.rate_limit = RateLimitConfig {
            requests: 3,
            window: Duration::from_secs(60),
        }
    })
    .await;
    Mock::given(path(ROOMS))
        .respond_with(rooms_ok())
        .mount(&server)
        .await;
    let t0 = Instant::now();

    for _ in 0..3 {
        client.rooms(&token(), None).await.unwrap();
    }
    let after_three = t0.elapsed();
    client.rooms(&token(), None).await.unwrap();

    assert!(after_three < Duration::from_secs(60), "{after_three:?}");
    assert!(
        t0.elapsed() >= Duration::from_secs(60),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(requests(&server).await.len(), 4, "waited, never failed");
}

#[tokio::test(start_paused = true)]
async fn remaining_zero_holds_the_next_request_until_the_reset() {
    let (server, client) = setup(|_| {}).await;
    let reset = now_ms() + 30_000; // absolute, in milliseconds (§8)
    Mock::given(path(ROOMS))
        .respond_with(
            rooms_ok()
                .insert_header("X-RateLimit-Limit", "100")
                .insert_header("X-RateLimit-Remaining", "0")
                .insert_header("X-RateLimit-Reset", reset.to_string().as_str()),
        )
        .mount(&server)
        .await;
    let t0 = Instant::now();

    client.rooms(&token(), None).await.unwrap();
    let first = t0.elapsed();
    client.rooms(&token(), None).await.unwrap();

    assert!(first < Duration::from_secs(1), "{first:?}");
    assert!(
        t0.elapsed() >= Duration::from_secs(29),
        "{:?}",
        t0.elapsed()
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_waits_until_the_reset_and_retries() {
    let (server, client) = setup(|c| c.retry.max_elapsed = Duration::from_secs(120)).await;
    let reset = now_ms() + 20_000;
    Mock::given(path(ROOMS))
        .respond_with(
            error_fixture(429, "error-429.json")
                .insert_header("X-RateLimit-Remaining", "0")
                .insert_header("X-RateLimit-Reset", reset.to_string().as_str()),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(ROOMS))
        .respond_with(rooms_ok())
        .mount(&server)
        .await;
    let t0 = Instant::now();

    client.rooms(&token(), None).await.unwrap();

    assert!(
        t0.elapsed() >= Duration::from_millis(19_900),
        "{:?}",
        t0.elapsed()
    );
    assert!(t0.elapsed() < Duration::from_secs(25), "{:?}", t0.elapsed());
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_429_without_headers_waits_the_default() {
    let (server, client) = setup(|c| c.retry.rate_limited_wait = Duration::from_secs(7)).await;
    Mock::given(path(ROOMS))
        .respond_with(ResponseTemplate::new(429))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(ROOMS))
        .respond_with(rooms_ok())
        .mount(&server)
        .await;
    let t0 = Instant::now();

    client.rooms(&token(), None).await.unwrap();

    assert!(t0.elapsed() >= Duration::from_secs(7), "{:?}", t0.elapsed());
}

#[tokio::test(start_paused = true)]
async fn an_old_servers_403_rate_limit_waits_like_a_429_but_other_403s_do_not() {
    let (server, client) = setup(|c| c.retry.rate_limited_wait = Duration::from_secs(5)).await;
    // Before dolph 0.2.0 the limiter answered 403 (docs/gitter-api.md §8).
    Mock::given(path(ROOMS))
        .respond_with(
            ResponseTemplate::new(403)
                .set_body_json(serde_json::json!({"error": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path(ROOMS))
        .respond_with(rooms_ok())
        .mount(&server)
        .await;
    let t0 = Instant::now();
    client.rooms(&token(), None).await.unwrap();
    assert!(t0.elapsed() >= Duration::from_secs(5), "{:?}", t0.elapsed());
    assert_eq!(requests(&server).await.len(), 2);

    server.reset().await;
    Mock::given(path(ROOMS))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(serde_json::json!({"error": "Forbidden"})),
        )
        .mount(&server)
        .await;
    let err = client.rooms(&token(), None).await.unwrap_err();
    assert_eq!(err.kind(), FailureKind::Forbidden);
    assert_eq!(requests(&server).await.len(), 1, "a refusal is not retried");
}

#[tokio::test(start_paused = true)]
async fn a_lasting_429_is_reported_rate_limited() {
    let (server, client) = setup(|c| c.retry.rate_limited_wait = Duration::from_secs(1)).await;
    Mock::given(path(ROOMS))
        .respond_with(error_fixture(429, "error-429.json"))
        .mount(&server)
        .await;

    let err = client.rooms(&token(), None).await.unwrap_err();

    assert_eq!(err.kind(), FailureKind::RateLimited);
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test(start_paused = true)]
async fn server_errors_back_off_exponentially() {
    let (server, client) = setup(|c| {
        c.retry.max_attempts = 4;
        c.retry.min_delay = Duration::from_secs(1);
        c.retry.max_delay = Duration::from_secs(60);
        c.retry.max_elapsed = Duration::from_secs(600);
    })
    .await;
    Mock::given(path(ROOMS))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(3)
        .mount(&server)
        .await;
    Mock::given(path(ROOMS))
        .respond_with(rooms_ok())
        .mount(&server)
        .await;
    let t0 = Instant::now();

    client.rooms(&token(), None).await.unwrap();

    // 1 s + 2 s + 4 s.
    assert!(t0.elapsed() >= Duration::from_secs(7), "{:?}", t0.elapsed());
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(requests(&server).await.len(), 4);
}

#[tokio::test(start_paused = true)]
async fn retries_stop_when_the_time_budget_is_spent() {
    let (server, client) = setup(|c| {
        c.retry.max_attempts = 10;
        c.retry.min_delay = Duration::from_secs(10);
        c.retry.max_delay = Duration::from_secs(60);
        c.retry.max_elapsed = Duration::from_secs(15);
    })
    .await;
    Mock::given(path(ROOMS))
        .respond_with(ResponseTemplate::new(503))
        .mount(&server)
        .await;

    let err = client.rooms(&token(), None).await.unwrap_err();

    // Attempt 1, wait 10 s, attempt 2; the next wait (20 s) would pass the budget.
    assert_eq!(err.kind(), FailureKind::Transient);
    assert_eq!(requests(&server).await.len(), 2);
}
