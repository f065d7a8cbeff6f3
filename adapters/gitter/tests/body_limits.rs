//! Every answer is read to a size limit, chunk by chunk (issue 12: one 1 GiB error body took
//! the bridge from 30 MB to 1.09 GB). The big bodies come from a loopback server that makes
//! them up while sending, so neither side ever holds one.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_core::{Action, FailureKind, Secret};
use gitter_bridge_gitter::{Blame, GitterError};
use wiremock::matchers::path;
use wiremock::{Mock, MockServer};

const MIB_100: u64 = 100 * 1024 * 1024;
/// Long enough never to be what ends a test; a body that is read whole would hit it.
const SLOW: Duration = Duration::from_secs(5);
const GIVE_UP: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_100_mib_answer_is_cut_at_the_limit() {
    // Chunked: no Content-Length to refuse it by, so the reader must stop by itself.
    let server = RawServer::start(Raw::huge(200)).await;
    let client = server.client(|_| {});

    let err = ends_within(GIVE_UP, client.rooms(&token(), None))
        .await
        .unwrap_err();

    assert!(
        matches!(err, GitterError::TooLarge { limit } if limit == 8 * 1024 * 1024),
        "{err:?}"
    );
    assert_eq!(
        err.to_string(),
        "answer from Gitter larger than 8 MiB: not read"
    );
    assert_eq!(
        (err.kind(), err.blame()),
        (FailureKind::Transient, Blame::Remote)
    );
    assert_eq!(server.connections(), 1, "the same answer would come again");
}

#[tokio::test]
async fn an_announced_100_mib_answer_is_refused_unread() {
    // The server announces 100 MiB and sends none of it: only the header can refuse it.
    let server = RawServer::start(Raw::Body {
        status: 200,
        len: MIB_100,
        declared: true,
        then_hang: true,
    })
    .await;
    let client = server.client(|c| c.request_timeout = Some(SLOW));

    let err = ends_within(GIVE_UP, client.current_user(&token()))
        .await
        .unwrap_err();

    assert!(matches!(err, GitterError::TooLarge { .. }), "{err:?}");
}

#[tokio::test]
async fn a_huge_error_body_is_dropped_and_the_status_still_counts() {
    // 100 MiB of error body, and then the connection stays open. No request deadline: only a
    // capped read can end this.
    let server = RawServer::start(Raw::Body {
        status: 401,
        len: MIB_100,
        declared: false,
        then_hang: true,
    })
    .await;
    let client = server.client(|c| c.request_timeout = None);

    let err = ends_within(GIVE_UP, client.rooms(&token(), None))
        .await
        .unwrap_err();

    assert!(matches!(err, GitterError::Unauthorized { .. }), "{err:?}");
    assert_eq!(err.kind(), FailureKind::TokenRevoked);
}

#[tokio::test]
async fn the_answer_limit_is_configurable() {
    let server = MockServer::start().await;
    Mock::given(path("/v1/user/me/rooms"))
        .respond_with(ok_fixture("rooms.json")) // 939 bytes
        .mount(&server)
        .await;
    let mut config = config(&server.uri());
    config.max_body_bytes = 512;
    let client = gitter_bridge_gitter::GitterClient::new(config).unwrap();

    let err = client.rooms(&token(), None).await.unwrap_err();

    assert_eq!(
        err.to_string(),
        "answer from Gitter larger than 512 bytes: not read"
    );
}

#[tokio::test]
async fn a_huge_token_answer_is_refused_at_64_kib() {
    let server = RawServer::start(Raw::huge(200)).await;
    let client = server.client(|_| {});
    let exchange = Action::OAuth {
        code: Secret::new("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    };

    let failure = ends_within(GIVE_UP, client.execute(&exchange))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(
        failure.message.contains("larger than 64 KiB"),
        "{}",
        failure.message
    );
}

#[tokio::test]
async fn a_huge_token_error_is_classified_by_its_status() {
    // As above: no deadline, so only the cap ends the read.
    let server = RawServer::start(Raw::Body {
        status: 503,
        len: MIB_100,
        declared: false,
        then_hang: true,
    })
    .await;
    let client = server.client(|c| c.request_timeout = None);
    let exchange = Action::OAuth {
        code: Secret::new("a94a8fe5ccb19ba61c4c0873d391e987982fbbd3"),
    };

    let failure = ends_within(GIVE_UP, client.execute(&exchange))
        .await
        .unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
    assert!(failure.message.contains("(503)"), "{}", failure.message);
}
