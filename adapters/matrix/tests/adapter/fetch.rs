//! Downloads of Gitter images (`fetch.rs`) against a wiremock web server on loopback.

use std::time::Duration;

use gitter_bridge_matrix::fetch::{FetchConfig, FetchError, Fetcher};
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn fetcher(allow_private: bool, max_bytes: u64) -> Fetcher {
    Fetcher::new(FetchConfig {
        max_bytes,
        time_limit: Duration::from_secs(5),
        allow_private,
    })
    .unwrap()
}

#[tokio::test]
async fn a_file_on_a_private_address_is_refused_unless_allowed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/cat.png"))
        .respond_with(
            ResponseTemplate::new(200)
                .insert_header("content-type", "image/png")
                .set_body_bytes(vec![1, 2, 3]),
        )
        .mount(&server)
        .await;
    let url = format!("{}/cat.png", server.uri());
    let refused = fetcher(false, 100).fetch(&url).await.unwrap_err();
    assert!(matches!(refused, FetchError::Refused(_)), "{refused}");
    // By name too: `localhost` resolves to loopback only.
    let by_name = url.replace("127.0.0.1", "localhost");
    assert!(fetcher(false, 100).fetch(&by_name).await.is_err());
    let (bytes, content_type) = fetcher(true, 100).fetch(&url).await.unwrap();
    assert_eq!(
        (bytes.to_vec(), content_type.as_str()),
        (vec![1, 2, 3], "image/png")
    );
}

#[tokio::test]
async fn a_failing_server_is_tried_again_a_few_times_and_a_large_file_not_at_all() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/flaky.png"))
        .respond_with(ResponseTemplate::new(503))
        .up_to_n_times(2)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/flaky.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![7; 10]))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/big.png"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![0; 1000]))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/gone.png"))
        .respond_with(ResponseTemplate::new(404))
        .expect(1)
        .mount(&server)
        .await;
    let f = fetcher(true, 100);
    let (bytes, _) = f
        .fetch(&format!("{}/flaky.png", server.uri()))
        .await
        .unwrap();
    assert_eq!(bytes.len(), 10);
    let big = f.fetch(&format!("{}/big.png", server.uri())).await;
    assert!(matches!(big, Err(FetchError::TooLarge(100))), "{big:?}");
    let gone = f.fetch(&format!("{}/gone.png", server.uri())).await;
    assert!(matches!(gone, Err(FetchError::Status(404))), "{gone:?}");
}

#[tokio::test]
async fn a_redirect_to_another_scheme_is_not_followed() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/to-file"))
        .respond_with(ResponseTemplate::new(302).insert_header("location", "file:///etc/passwd"))
        .mount(&server)
        .await;
    let f = fetcher(true, 100);
    let to_file = f.fetch(&format!("{}/to-file", server.uri())).await;
    // Refused by the policy, or left unfollowed by the client: never read.
    assert!(
        matches!(
            to_file,
            Err(FetchError::Refused(_) | FetchError::Status(302))
        ),
        "{to_file:?}"
    );
}
