//! The REST client against a mock Gitter that answers with the payloads of docs/gitter-api.md.

mod common;

use std::time::Duration;

use common::*;
use gitter_bridge_core::{FailureKind, GitterRoom, GitterUser};
use gitter_bridge_gitter::{Blame, GitterClient, GitterError};
use serde_json::json;
use wiremock::matchers::{method, path, query_param};
use wiremock::{Mock, MockServer, ResponseTemplate};

#[tokio::test]
async fn current_user_is_read_from_user_me() {
    let (server, client) = gitter().await;
    Mock::given(method("GET"))
        .and(path("/v1/user/me"))
        .respond_with(ok_fixture("user-me.json"))
        .mount(&server)
        .await;

    let user = GitterUser::from(client.current_user(&token()).await.unwrap());

    assert_request(&only_request(&server).await, "GET", "/v1/user/me", None);
    assert_eq!(user.id.as_str(), "553d437215522ed4b3df8c50");
    assert_eq!(user.username, "MadLittleMods");
    assert_eq!(user.display_name, "Eric Eastwood");
    assert_eq!(
        user.avatar_url.as_deref(),
        Some("https://avatars-05.gitter.im/gh/uv/3/MadLittleMods")
    );
}

#[tokio::test]
async fn current_user_accepts_the_array_form() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me"))
        .respond_with(ok_fixture("user-array.json"))
        .mount(&server)
        .await;

    let user = client.current_user(&token()).await.unwrap();

    assert_eq!(user.username, "malditogeek");
    // 2014 users have no avatarUrl: the medium one stands in.
    assert_eq!(
        GitterUser::from(user).avatar_url.as_deref(),
        Some("https://avatars.githubusercontent.com/u/14751?")
    );
}

#[tokio::test]
async fn current_user_falls_back_to_v1_user_without_the_me_route() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me"))
        .respond_with(error_fixture(404, "error-404.json"))
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/user"))
        .respond_with(ok_fixture("user-array.json"))
        .mount(&server)
        .await;

    let user = client.current_user(&token()).await.unwrap();

    assert_eq!(user.id, "53307734c3599d1de448e192");
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 2);
    assert_request(&reqs[1], "GET", "/v1/user", None);
}

#[tokio::test]
async fn a_base_with_a_path_prefix_is_kept() {
    // The web client's API lives at https://gitter.im/api (§1.1).
    let server = MockServer::start().await;
    let client = GitterClient::new(config(&format!("{}/api", server.uri()))).unwrap();
    Mock::given(path("/api/v1/user/me"))
        .respond_with(ok_fixture("user-captured.json"))
        .mount(&server)
        .await;

    let user = client.current_user(&token()).await.unwrap();

    assert_eq!(user.username, "RatakondalaArun");
}

#[tokio::test]
async fn rooms_are_listed_with_one_to_one_rooms_and_membership() {
    let (server, client) = gitter().await;
    Mock::given(method("GET"))
        .and(path("/v1/user/me/rooms"))
        .respond_with(ok_fixture("rooms.json"))
        .mount(&server)
        .await;

    let rooms: Vec<GitterRoom> = client
        .rooms(&token(), None)
        .await
        .unwrap()
        .into_iter()
        .map(GitterRoom::from)
        .collect();

    assert_request(
        &only_request(&server).await,
        "GET",
        "/v1/user/me/rooms",
        None,
    );
    assert_eq!(rooms.len(), 2);
    assert!(rooms[0].one_to_one);
    assert_eq!(rooms[0].uri, None);
    assert_eq!(rooms[0].name, "Andrew Newdigate");
    assert_eq!(rooms[1].uri.as_deref(), Some("gitterHQ/devops"));
    assert_eq!(rooms[1].user_count, Some(2));
    assert_eq!(
        rooms[1].room_member, None,
        "2014 payloads have no roomMember"
    );
}

#[tokio::test]
async fn a_uri_is_resolved_with_post_rooms() {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/v1/rooms"))
        .respond_with(ok_fixture("room.json"))
        .mount(&server)
        .await;

    let room = GitterRoom::from(
        client
            .resolve_room(&token(), "dart-lang/sdk")
            .await
            .unwrap(),
    );

    let req = only_request(&server).await;
    assert_request(
        &req,
        "POST",
        "/v1/rooms",
        Some(json!({"uri": "dart-lang/sdk"})),
    );
    assert_eq!(room.id.as_str(), "5787e94cc2f0db084a230583");
    assert_eq!(room.room_member, Some(true));
    assert_eq!(room.user_count, Some(1958));
    assert!(room.topic.starts_with("The Dart SDK"));
}

#[tokio::test]
async fn joining_posts_the_room_id_to_the_users_rooms() {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/v1/user/5f9ab228d73408ce4ff2c66c/rooms"))
        .respond_with(ok_fixture("room.json"))
        .mount(&server)
        .await;

    client
        .join_room(
            &token(),
            "5f9ab228d73408ce4ff2c66c",
            "5787e94cc2f0db084a230583",
        )
        .await
        .unwrap();

    let req = only_request(&server).await;
    assert_request(
        &req,
        "POST",
        "/v1/user/5f9ab228d73408ce4ff2c66c/rooms",
        Some(json!({"id": "5787e94cc2f0db084a230583"})),
    );
}

#[tokio::test]
async fn leaving_deletes_the_membership_with_a_zero_content_length() {
    let (server, client) = gitter().await;
    Mock::given(method("DELETE"))
        .and(path(
            "/v1/rooms/5787e94cc2f0db084a230583/users/5f9ab228d73408ce4ff2c66c",
        ))
        .respond_with(ok_fixture("success.json"))
        .mount(&server)
        .await;

    client
        .leave_room(
            &token(),
            "5787e94cc2f0db084a230583",
            "5f9ab228d73408ce4ff2c66c",
        )
        .await
        .unwrap();

    let req = only_request(&server).await;
    assert_request(
        &req,
        "DELETE",
        "/v1/rooms/5787e94cc2f0db084a230583/users/5f9ab228d73408ce4ff2c66c",
        None,
    );
    assert_eq!(req.headers["content-length"], "0");
}

fn members(range: std::ops::Range<u32>) -> serde_json::Value {
    range
        .map(|i| json!({"id": format!("{i:024x}"), "username": format!("user{i}"), "displayName": format!("User {i}")}))
        .collect()
}

#[tokio::test]
async fn members_are_paged_with_overlap_until_a_short_page() {
    let (server, client) = gitter().await;
    let room = "/v1/rooms/5787e94cc2f0db084a230583/users";
    Mock::given(path(room))
        .and(query_param("skip", "0"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(members(0..100)))
        .mount(&server)
        .await;
    Mock::given(path(room))
        .and(query_param("skip", "95"))
        .and(query_param("limit", "100"))
        .respond_with(ResponseTemplate::new(200).set_body_json(members(95..130)))
        .mount(&server)
        .await;

    let users = client
        .room_members(&token(), "5787e94cc2f0db084a230583")
        .await
        .unwrap();

    assert_eq!(users.len(), 130, "overlap deduplicated");
    assert_eq!(users[129].username, "user129");
    let reqs = requests(&server).await;
    assert_eq!(reqs.len(), 2);
    reqs.iter()
        .for_each(|r| assert_request(r, "GET", room, None));
}

#[tokio::test]
async fn the_fixture_member_list_is_one_short_page() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/rooms/r1/users"))
        .respond_with(ok_fixture("room-members.json"))
        .mount(&server)
        .await;

    let users = client.room_members(&token(), "r1").await.unwrap();

    assert_eq!(users.len(), 2);
    assert_eq!(users[0].role.as_deref(), Some("admin"));
}

#[tokio::test]
async fn messages_page_after_a_cursor_and_clamp_the_limit() {
    let (server, client) = gitter().await;
    let page = json!([
        fixture_json("message-sent-2014.json"),
        fixture_json("message-plain.json")
    ]);
    Mock::given(path("/v1/rooms/r1/chatMessages"))
        .respond_with(ResponseTemplate::new(200).set_body_json(page))
        .mount(&server)
        .await;

    let msgs = client
        .messages(&token(), "r1", Some("533171eb7bfc1a0000000000"), None, 500)
        .await
        .unwrap();

    let req = only_request(&server).await;
    assert_request(&req, "GET", "/v1/rooms/r1/chatMessages", None);
    assert_eq!(
        query(&req, "afterId").as_deref(),
        Some("533171eb7bfc1a0000000000")
    );
    assert_eq!(query(&req, "limit").as_deref(), Some("100"));
    assert_eq!(query(&req, "beforeId"), None);
    assert_eq!(msgs.len(), 2);
    assert_eq!(msgs[0].id, "533171eb7bfc1a0000000012", "oldest first");
}

#[tokio::test]
async fn message_shapes_of_every_era_are_read() {
    for (name, text) in message_fixtures() {
        let m: gitter_bridge_gitter::Message = serde_json::from_str(&text).unwrap();
        let core = m.clone().into_core().unwrap_or_else(|| panic!("{name}"));
        assert!(!core.id.as_str().is_empty(), "{name}");
        assert!(m.sent_ms().is_some(), "{name}: sent parses");
        match name.as_str() {
            "message-edited.json" => assert!(m.edited_at.is_some()),
            "message-sent-2014.json" | "message-plain.json" => assert!(m.edited_at.is_none()),
            "message-status.json" => {
                assert!(core.status);
                assert_eq!(m.mentions[1].user_id, None);
            }
            "message-thread-reply.json" => {
                assert_eq!(core.parent_id.unwrap().as_str(), "5fedc6a6ac9d8e7463d4c86b")
            }
            "message-thread-parent.json" => assert_eq!(m.thread_message_count, Some(1)),
            _ => {}
        }
    }
}

#[tokio::test]
async fn sending_posts_text_status_and_the_thread() {
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/v1/rooms/r1/chatMessages"))
        .respond_with(ok_fixture("message-status.json"))
        .mount(&server)
        .await;

    client
        .send_message(&token(), "r1", "hello", false, None)
        .await
        .unwrap();
    let m = client
        .send_message(&token(), "r1", "@RatakondalaArun waves", true, None)
        .await
        .unwrap();
    client
        .send_message(
            &token(),
            "r1",
            "in the thread",
            false,
            Some("5fedc6a6ac9d8e7463d4c86b"),
        )
        .await
        .unwrap();

    assert!(m.status);
    let reqs = requests(&server).await;
    assert_request(
        &reqs[0],
        "POST",
        "/v1/rooms/r1/chatMessages",
        Some(json!({"text": "hello"})),
    );
    assert_request(
        &reqs[1],
        "POST",
        "/v1/rooms/r1/chatMessages",
        Some(json!({"text": "@RatakondalaArun waves", "status": true})),
    );
    assert_request(
        &reqs[2],
        "POST",
        "/v1/rooms/r1/chatMessages",
        Some(json!({"text": "in the thread", "parentId": "5fedc6a6ac9d8e7463d4c86b"})),
    );
}

#[tokio::test]
async fn editing_puts_and_deleting_accepts_204() {
    let (server, client) = gitter().await;
    Mock::given(method("PUT"))
        .and(path("/v1/rooms/r1/chatMessages/m1"))
        .respond_with(ok_fixture("message-edited.json"))
        .mount(&server)
        .await;
    Mock::given(method("DELETE"))
        .and(path("/v1/rooms/r1/chatMessages/m1"))
        .respond_with(ResponseTemplate::new(204))
        .mount(&server)
        .await;

    client
        .edit_message(&token(), "r1", "m1", "fixed")
        .await
        .unwrap();
    client.delete_message(&token(), "r1", "m1").await.unwrap();

    let reqs = requests(&server).await;
    assert_request(
        &reqs[0],
        "PUT",
        "/v1/rooms/r1/chatMessages/m1",
        Some(json!({"text": "fixed"})),
    );
    assert_request(&reqs[1], "DELETE", "/v1/rooms/r1/chatMessages/m1", None);
}

#[tokio::test]
async fn ids_are_percent_encoded_into_paths() {
    let (server, client) = gitter().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(200).set_body_string("[]"))
        .mount(&server)
        .await;

    client
        .messages(&token(), "a/b?c", None, None, 10)
        .await
        .unwrap();

    assert_eq!(
        only_request(&server).await.url.path(),
        "/v1/rooms/a%2Fb%3Fc/chatMessages"
    );
}

/// The error of a room listing answered with `answer`, and how many requests were made.
async fn error_for(answer: ResponseTemplate) -> (GitterError, usize) {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me/rooms"))
        .respond_with(answer)
        .mount(&server)
        .await;
    let err = client.rooms(&token(), None).await.unwrap_err();
    (err, requests(&server).await.len())
}

#[tokio::test]
async fn client_errors_are_classified_and_not_retried() {
    let cases = [
        (
            401,
            "error-401.json",
            FailureKind::TokenRevoked,
            Blame::User,
        ),
        (403, "error-403.json", FailureKind::Forbidden, Blame::User),
        (404, "error-404.json", FailureKind::NotFound, Blame::User),
        (
            400,
            "error-400-text.json",
            FailureKind::Rejected,
            Blame::Remote,
        ),
    ];
    for (status, body, kind, blame) in cases {
        let (err, count) = error_for(error_fixture(status, body)).await;
        assert_eq!(
            (err.kind(), err.blame(), count),
            (kind, blame, 1),
            "{status}"
        );
        let expected = fixture_json(body)["error"].as_str().unwrap().to_owned();
        assert!(err.to_string().contains(&expected), "{err}");
    }
    let (err, _) = error_for(ResponseTemplate::new(406).set_body_string("nope")).await;
    assert_eq!(err.kind(), FailureKind::Rejected);
}

#[tokio::test]
async fn an_unreadable_answer_is_rejected() {
    let (err, count) = error_for(ResponseTemplate::new(200).set_body_string("<html>")).await;
    assert_eq!(
        (err.kind(), err.blame(), count),
        (FailureKind::Rejected, Blame::Remote, 1)
    );
}

#[tokio::test]
async fn server_errors_are_retried_then_reported_transient() {
    let (err, count) = error_for(ResponseTemplate::new(503)).await;
    assert_eq!(count, 3, "max_attempts");
    assert_eq!(
        (err.kind(), err.blame()),
        (FailureKind::Transient, Blame::Transient)
    );
}

#[tokio::test]
async fn a_server_error_that_passes_is_invisible() {
    let (server, client) = gitter().await;
    Mock::given(path("/v1/user/me/rooms"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(path("/v1/user/me/rooms"))
        .respond_with(ok_fixture("rooms.json"))
        .mount(&server)
        .await;

    let rooms = client.rooms(&token(), None).await.unwrap();

    assert_eq!(rooms.len(), 2);
    assert_eq!(requests(&server).await.len(), 2);
}

#[tokio::test]
async fn network_errors_are_retried_then_reported_transient() {
    let client = GitterClient::new(config(&dead_port_base())).unwrap();

    let err = client.rooms(&token(), None).await.unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    let text = err.to_string();
    assert!(text.contains("after 3 attempts"), "{text}");
    assert!(!text.contains(TOKEN));
}

// ---- a post is never repeated when its outcome is unknown (issue 12) ----

const CHAT: &str = "/v1/rooms/r1/chatMessages";

async fn send_hello(client: &GitterClient) -> Result<gitter_bridge_gitter::Message, GitterError> {
    client
        .send_message(&token(), "r1", "hello", false, None)
        .await
}

#[tokio::test]
async fn a_send_answered_500_is_posted_once_and_reported_transient() {
    // A 5xx from a proxy says nothing about whether Gitter stored the message.
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path(CHAT))
        .respond_with(ResponseTemplate::new(500))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CHAT))
        .respond_with(ok_fixture("message-plain.json"))
        .mount(&server)
        .await;

    let err = send_hello(&client).await.unwrap_err();

    assert_eq!(
        (err.kind(), err.blame()),
        (FailureKind::Transient, Blame::Transient)
    );
    assert_eq!(requests(&server).await.len(), 1, "posted exactly once");
}

#[tokio::test]
async fn a_send_whose_connection_closes_unanswered_is_posted_once() {
    let server = RawServer::start(Raw::CloseUnanswered).await;
    let client = server.client(|_| {});

    let err = ends_within(Duration::from_secs(20), send_hello(&client))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    assert_eq!(server.connections(), 1, "posted exactly once");
}

#[tokio::test]
async fn a_send_that_times_out_is_posted_once() {
    let server = RawServer::start(Raw::Hang).await;
    let client = server.client(|c| c.request_timeout = Some(Duration::from_millis(300)));

    let err = ends_within(Duration::from_secs(20), send_hello(&client))
        .await
        .unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(server.connections(), 1, "posted exactly once");
}

#[tokio::test]
async fn a_rate_limited_send_is_posted_again() {
    // The limiter answers before any route runs (docs/gitter-api.md §8): nothing was stored. Both
    // forms: the old 403 and the 429.
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path(CHAT))
        .respond_with(
            ResponseTemplate::new(403).set_body_json(json!({"error": "API rate limit exceeded"})),
        )
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CHAT))
        .respond_with(error_fixture(429, "error-429.json"))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path(CHAT))
        .respond_with(ok_fixture("message-plain.json"))
        .mount(&server)
        .await;

    let sent = send_hello(&client).await.unwrap();

    assert_eq!(sent.id, "5fedc44197312f4b6bfe4519");
    assert_eq!(requests(&server).await.len(), 3);
}

#[tokio::test]
async fn a_send_that_cannot_connect_is_tried_again() {
    // Refused before a byte went out: certainly not stored.
    let client = GitterClient::new(config(&dead_port_base())).unwrap();

    let err = send_hello(&client).await.unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    assert!(err.to_string().contains("after 3 attempts"), "{err}");
}

#[tokio::test]
async fn a_listing_whose_connection_closes_unanswered_is_retried() {
    // Reading twice is harmless: GETs keep retrying after a lost answer.
    let server = RawServer::start(Raw::CloseUnanswered).await;
    let client = server.client(|_| {});

    let err = client.rooms(&token(), None).await.unwrap_err();

    assert_eq!(err.kind(), FailureKind::Transient);
    assert_eq!(server.connections(), 3, "max_attempts");
}

#[tokio::test]
async fn joining_is_retried_after_a_server_error() {
    // Joining a room twice is joining it once.
    let (server, client) = gitter().await;
    Mock::given(method("POST"))
        .and(path("/v1/user/u1/rooms"))
        .respond_with(ResponseTemplate::new(502))
        .up_to_n_times(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .and(path("/v1/user/u1/rooms"))
        .respond_with(ok_fixture("room.json"))
        .mount(&server)
        .await;

    client.join_room(&token(), "u1", "r1").await.unwrap();

    assert_eq!(requests(&server).await.len(), 2);
}
