//! The OAuth2 authorization-code flow of docs/gitter-api.md §2.

mod common;

use common::*;
use gitter_bridge_core::{Action, EffectOutput, FailureKind, Secret};
use gitter_bridge_gitter::GitterClient;
use wiremock::matchers::{method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const CODE: &str = "a94a8fe5ccb19ba61c4c0873d391e987982fbbd3";

fn exchange() -> Action {
    Action::OAuth {
        code: Secret::new(CODE),
    }
}

async fn token_endpoint(answer: ResponseTemplate) -> (MockServer, GitterClient) {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/login/oauth/token"))
        .respond_with(answer)
        .mount(&server)
        .await;
    (server, client)
}

#[tokio::test]
async fn the_authorize_url_carries_what_gitter_needs() {
    let (_server, client) = gitter().await;

    let url = client.oauth().authorize_url("st4te");

    assert_eq!(url.path(), "/login/oauth/authorize");
    let q: std::collections::HashMap<_, _> = url.query_pairs().into_owned().collect();
    assert_eq!(q["client_id"], "client-key");
    assert_eq!(q["response_type"], "code");
    assert_eq!(q["redirect_uri"], "http://bridge.test/oauth/callback");
    assert_eq!(q["state"], "st4te");
    assert!(!q.contains_key("scope"), "Gitter has no scopes");
}

#[tokio::test]
async fn the_code_is_exchanged_with_client_credentials_in_the_body() {
    let (server, client) = token_endpoint(ok_fixture("oauth-token.json")).await;

    let out = client.execute(&exchange()).await.unwrap();

    let EffectOutput::Token(token) = out else {
        panic!("{out:?}")
    };
    assert_eq!(token.expose(), "9f2c0e5d7a1b3c4d5e6f708192a3b4c5d6e7f809");
    let req = only_request(&server).await;
    assert_eq!(req.method.as_str(), "POST");
    assert!(
        req.headers.get("authorization").is_none(),
        "no HTTP Basic: Gitter refuses it"
    );
    assert_eq!(req.headers["accept"], "application/json");
    assert_eq!(
        req.headers["content-length"],
        req.body.len().to_string().as_str()
    );
    let form: std::collections::HashMap<String, String> = url::form_urlencoded::parse(&req.body)
        .into_owned()
        .collect();
    assert_eq!(form["grant_type"], "authorization_code");
    assert_eq!(form["code"], CODE);
    assert_eq!(form["redirect_uri"], "http://bridge.test/oauth/callback");
    assert_eq!(form["client_id"], "client-key");
    assert_eq!(form["client_secret"], CLIENT_SECRET);
}

#[tokio::test]
async fn token_type_is_compared_without_regard_to_case() {
    for fixture in ["oauth-token.json", "oauth-token-docs.json"] {
        let (_server, client) = token_endpoint(ok_fixture(fixture)).await;
        let out = client.execute(&exchange()).await;
        assert!(
            matches!(out, Ok(EffectOutput::Token(_))),
            "{fixture}: {out:?}"
        );
    }
}

#[tokio::test]
async fn the_docs_form_encoded_token_answer_is_read_too() {
    // docs/gitter-api.md §2.2: what the docs show (the 2020 code sends JSON).
    let body = "access_token=9f2c0e5d7a1b3c4d5e6f708192a3b4c5d6e7f809&scope=flow%2Cprivate\
                &token_type=bearer&expires_in=3600";
    let answer = ResponseTemplate::new(200).set_body_raw(body, "application/x-www-form-urlencoded");
    let (_server, client) = token_endpoint(answer).await;

    let out = client.execute(&exchange()).await.unwrap();

    let EffectOutput::Token(token) = out else {
        panic!("{out:?}")
    };
    assert_eq!(token.expose(), "9f2c0e5d7a1b3c4d5e6f708192a3b4c5d6e7f809");
}

#[tokio::test]
async fn a_non_bearer_token_is_refused() {
    let body = serde_json::json!({"access_token": "x", "token_type": "mac"});
    let (_server, client) = token_endpoint(ResponseTemplate::new(200).set_body_json(body)).await;

    let failure = client.execute(&exchange()).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Rejected);
}

#[tokio::test]
async fn a_used_code_is_rejected_without_leaking_secrets() {
    let (_server, client) = token_endpoint(error_fixture(403, "oauth-invalid-grant.json")).await;

    let failure = client.execute(&exchange()).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Rejected);
    assert!(
        failure.message.contains("invalid_grant"),
        "{}",
        failure.message
    );
    assert!(!failure.message.contains(CODE));
    assert!(!failure.message.contains(CLIENT_SECRET));
}

#[tokio::test]
async fn bad_client_credentials_are_not_a_revoked_login() {
    let body = serde_json::json!({"error": "server_error", "error_description": "Unauthorized"});
    let (_server, client) = token_endpoint(ResponseTemplate::new(401).set_body_json(body)).await;

    let failure = client.execute(&exchange()).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Forbidden);
}

#[tokio::test]
async fn a_token_endpoint_outage_is_transient() {
    let (_server, client) = token_endpoint(ResponseTemplate::new(503).set_body_string("")).await;

    let failure = client.execute(&exchange()).await.unwrap_err();

    assert_eq!(failure.kind, FailureKind::Transient);
}
