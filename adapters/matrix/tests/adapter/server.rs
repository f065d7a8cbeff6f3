//! The AS endpoints, driven through the router as the homeserver would call them.

use std::time::Duration;

use axum::http::StatusCode;
use gitter_bridge_core::{AsTxnId, Input, MatrixEventKind};
use gitter_bridge_matrix::MatrixClient;
use serde_json::json;
use wiremock::ResponseTemplate;
use wiremock::matchers::body_json;

use crate::helpers::*;

const TXN: &str = "/_matrix/app/v1/transactions/1";

fn empty_txn() -> String {
    json!({ "events": [] }).to_string()
}

// ---------------------------------------------------------------- authentication

#[tokio::test]
async fn a_request_without_a_token_is_401() {
    let (router, _source) = as_router();
    let (status, body) = send(&router, request("PUT", TXN, Auth::None, empty_txn())).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert_eq!(errcode(&body), "M_MISSING_TOKEN");
}

#[tokio::test]
async fn a_wrong_token_is_403_everywhere() {
    let (router, _source) = as_router();
    for (m, uri) in [
        ("PUT", TXN),
        ("GET", "/_matrix/app/v1/users/%40gitter_bob%3Aexample.org"),
        ("GET", "/_matrix/app/v1/rooms/%23x%3Aexample.org"),
        ("POST", "/_matrix/app/v1/ping"),
    ] {
        let (status, body) = send(&router, request(m, uri, Auth::Bearer("nope"), "{}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{m} {uri}");
        assert_eq!(errcode(&body), "M_FORBIDDEN");
        let (status, _) = send(&router, request(m, uri, Auth::Query("nope"), "{}")).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{m} {uri} (query)");
    }
}

#[tokio::test]
async fn a_token_of_another_length_is_refused() {
    let (router, _source) = as_router();
    let longer = format!("{HS_TOKEN}x");
    let prefix = &HS_TOKEN[..HS_TOKEN.len() - 1];
    for token in [longer.as_str(), prefix, ""] {
        let (status, _) = send(
            &router,
            request("POST", "/_matrix/app/v1/ping", Auth::Bearer(token), "{}"),
        )
        .await;
        assert_ne!(status, StatusCode::OK, "token {token:?} accepted");
    }
}

#[tokio::test]
async fn the_legacy_access_token_query_parameter_is_accepted() {
    let (router, source) = as_router();
    let driver = spawn_driver(source, Ok(()));
    let (status, body) = send(
        &router,
        request("PUT", TXN, Auth::Query(HS_TOKEN), empty_txn()),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
    drop(router);
    assert_eq!(driver.await.unwrap().len(), 1);
}

#[tokio::test]
async fn when_both_tokens_are_given_both_must_match() {
    let (router, _source) = as_router();
    let uri = "/_matrix/app/v1/ping?access_token=wrong";
    let (status, _) = send(&router, request("POST", uri, Auth::Bearer(HS_TOKEN), "{}")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
}

// ---------------------------------------------------------------- routes

#[tokio::test]
async fn unknown_routes_are_404_unrecognized_and_wrong_methods_405() {
    let (router, _source) = as_router();
    let (status, body) = send(
        &router,
        request(
            "GET",
            "/_matrix/app/v1/thirdparty/protocol/gitter",
            Auth::Bearer(HS_TOKEN),
            "",
        ),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(errcode(&body), "M_UNRECOGNIZED");
    let (status, body) = send(&router, request("GET", TXN, Auth::Bearer(HS_TOKEN), "")).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(errcode(&body), "M_UNRECOGNIZED");
}

#[tokio::test]
async fn ping_answers_empty_json() {
    let (router, _source) = as_router();
    let (status, body) = send(
        &router,
        request(
            "POST",
            "/_matrix/app/v1/ping",
            Auth::Bearer(HS_TOKEN),
            r#"{"transaction_id":"t1"}"#,
        ),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
}

#[tokio::test]
async fn room_alias_queries_are_not_found() {
    let (router, _source) = as_router();
    for uri in [
        "/_matrix/app/v1/rooms/%23_gitter_x%3Aexample.org",
        "/rooms/%23_gitter_x%3Aexample.org",
    ] {
        let (status, body) = send(&router, request("GET", uri, Auth::Bearer(HS_TOKEN), "")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{uri}");
        assert_eq!(errcode(&body), "M_NOT_FOUND");
    }
}

#[tokio::test]
async fn user_queries_know_ghosts_and_the_bot_from_percent_encoded_ids() {
    let (router, _source) = as_router();
    let cases = [
        (
            "/_matrix/app/v1/users/%40gitter_bob%3Aexample.org",
            StatusCode::OK,
        ),
        ("/users/%40gitter_bob%3Aexample.org", StatusCode::OK),
        (
            "/_matrix/app/v1/users/%40gitterbot%3Aexample.org",
            StatusCode::OK,
        ),
        (
            "/_matrix/app/v1/users/%40alice%3Aexample.org",
            StatusCode::NOT_FOUND,
        ),
        (
            "/_matrix/app/v1/users/%40gitter_bob%3Aother.org",
            StatusCode::NOT_FOUND,
        ),
        ("/_matrix/app/v1/users/not-a-user-id", StatusCode::NOT_FOUND),
    ];
    for (uri, expected) in cases {
        let (status, body) = send(&router, request("GET", uri, Auth::Bearer(HS_TOKEN), "")).await;
        assert_eq!(status, expected, "{uri}");
        if expected == StatusCode::NOT_FOUND {
            assert_eq!(errcode(&body), "M_NOT_FOUND");
        }
    }
}

#[tokio::test]
async fn a_user_query_for_a_ghost_registers_it_first() {
    let (hs, client): (_, MatrixClient) = homeserver().await;
    expect_call("POST", "/_matrix/client/v3/register")
        .and(body_json(json!({
            "type": "m.login.application_service",
            "username": "gitter_new",
            "inhibit_login": true,
        })))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(json!({ "user_id": "@gitter_new:example.org" })),
        )
        .expect(1)
        .mount(&hs)
        .await;
    let (router, _source) = as_router_with(server_config(), Some(client));
    let (status, body) = send(
        &router,
        request(
            "GET",
            "/_matrix/app/v1/users/%40gitter_new%3Aexample.org",
            Auth::Bearer(HS_TOKEN),
            "",
        ),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));
}

// ---------------------------------------------------------------- transactions

#[tokio::test]
async fn a_transaction_is_answered_only_after_the_driver_commits() {
    let (router, mut source) = as_router();
    let body = String::from_utf8(fixture("transaction_bot_invite.json")).unwrap();
    // `%2F` in the txn id: the homeserver percent-encodes path parameters.
    let pending = tokio::spawn({
        let router = router.clone();
        async move {
            send(
                &router,
                request(
                    "PUT",
                    "/_matrix/app/v1/transactions/txn%2F7",
                    Auth::Bearer(HS_TOKEN),
                    body,
                ),
            )
            .await
        }
    });

    let txn = source
        .recv()
        .await
        .expect("the transaction reaches the driver");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!pending.is_finished(), "answered before the commit");

    let (input, ack) = txn.into_input();
    let Input::Transaction { txn_id, events } = input else {
        panic!("not a transaction input");
    };
    assert_eq!(txn_id, AsTxnId::new("txn/7"));
    assert_eq!(events.len(), 1);
    assert!(matches!(events[0].kind, MatrixEventKind::Member { .. }));

    ack.send(Ok(())).unwrap();
    let (status, body) = pending.await.unwrap();
    assert_eq!((status, body), (StatusCode::OK, json!({})));
}

#[tokio::test]
async fn a_transaction_the_driver_fails_to_commit_is_500_so_the_homeserver_retries() {
    let (router, source) = as_router();
    let _driver = spawn_driver(source, Err("database is locked".to_owned()));
    let (status, body) = send(
        &router,
        request("PUT", TXN, Auth::Bearer(HS_TOKEN), empty_txn()),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(errcode(&body), "M_UNKNOWN");
    assert!(
        !body.to_string().contains("database"),
        "internal details stay in the logs"
    );
}

#[tokio::test]
async fn a_transaction_whose_ack_is_dropped_is_500() {
    let (router, mut source) = as_router();
    let driver = tokio::spawn(async move {
        while let Some(txn) = source.recv().await {
            drop(txn);
        }
    });
    let (status, body) = send(
        &router,
        request("PUT", TXN, Auth::Bearer(HS_TOKEN), empty_txn()),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(errcode(&body), "M_UNKNOWN");
    drop(router);
    driver.await.unwrap();
}

#[tokio::test]
async fn a_transaction_while_the_driver_is_gone_is_500() {
    let (router, source) = as_router();
    drop(source);
    let (status, body) = send(
        &router,
        request("PUT", TXN, Auth::Bearer(HS_TOKEN), empty_txn()),
    )
    .await;
    assert_eq!(status, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(errcode(&body), "M_UNKNOWN");
}

#[tokio::test]
async fn the_legacy_transactions_path_works() {
    let (router, source) = as_router();
    let driver = spawn_driver(source, Ok(()));
    let (status, _) = send(
        &router,
        request(
            "PUT",
            "/transactions/42",
            Auth::Bearer(HS_TOKEN),
            empty_txn(),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    drop(router);
    let seen = driver.await.unwrap();
    assert_eq!(seen[0].txn_id, AsTxnId::new("42"));
}

#[tokio::test]
async fn malformed_bodies_are_400_with_the_right_errcode() {
    let (router, _source) = as_router();
    let cases = [
        ("{not json", "M_NOT_JSON"),
        ("", "M_NOT_JSON"),
        ("[]", "M_BAD_JSON"),
        (r#"{"events": {}}"#, "M_BAD_JSON"),
        (r#"{"events": "nope"}"#, "M_BAD_JSON"),
        (r#"{"ephemeral": []}"#, "M_BAD_JSON"),
    ];
    for (body, expected) in cases {
        let (status, answer) =
            send(&router, request("PUT", TXN, Auth::Bearer(HS_TOKEN), body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body:?}");
        assert_eq!(errcode(&answer), expected, "{body:?}");
    }
}

#[tokio::test]
async fn one_bad_event_does_not_fail_the_transaction_and_unknown_keys_are_ignored() {
    let (router, source) = as_router();
    let driver = spawn_driver(source, Ok(()));
    let body = fixture("transaction_malformed_events.json");
    let (status, _) = send(&router, request("PUT", TXN, Auth::Bearer(HS_TOKEN), body)).await;
    assert_eq!(status, StatusCode::OK);
    drop(router);
    let seen = driver.await.unwrap();
    // 11 entries: 4 unidentifiable ones are skipped, the rest kept in order.
    assert_eq!(seen[0].events.len(), 7);
}

#[tokio::test]
async fn ephemeral_only_transactions_are_accepted() {
    let (router, source) = as_router();
    let driver = spawn_driver(source, Ok(()));
    let body = fixture("transaction_ephemeral_only.json");
    let (status, _) = send(&router, request("PUT", TXN, Auth::Bearer(HS_TOKEN), body)).await;
    assert_eq!(status, StatusCode::OK);
    drop(router);
    assert!(driver.await.unwrap()[0].events.is_empty());
}

#[tokio::test]
async fn a_body_over_the_limit_is_413() {
    let mut config = server_config();
    config.body_limit = 1024;
    let (router, _source) = as_router_with(config, None);
    let big = json!({ "events": [], "padding": "x".repeat(4096) }).to_string();
    let (status, body) = send(&router, request("PUT", TXN, Auth::Bearer(HS_TOKEN), big)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(errcode(&body), "M_TOO_LARGE");
}

#[tokio::test]
async fn the_default_limit_takes_a_large_synapse_transaction() {
    // 100 events with 20 KiB bodies: over axum's 2 MiB default, under ours.
    let (router, source) = as_router();
    let driver = spawn_driver(source, Ok(()));
    let template = fixture_json("transaction_bot_invite.json")["events"][0].clone();
    let events: Vec<_> = (0..100)
        .map(|i| {
            let mut e = template.clone();
            e["event_id"] = json!(format!("$event{i}"));
            e["content"]["padding"] = json!("y".repeat(24 * 1024));
            e
        })
        .collect();
    let body = json!({ "events": events }).to_string();
    assert!(body.len() > 2 * 1024 * 1024);
    let (status, _) = send(&router, request("PUT", TXN, Auth::Bearer(HS_TOKEN), body)).await;
    assert_eq!(status, StatusCode::OK);
    drop(router);
    assert_eq!(driver.await.unwrap()[0].events.len(), 100);
}
