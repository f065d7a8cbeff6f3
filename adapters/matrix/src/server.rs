//! The application-service HTTP server: the endpoints the homeserver calls.
//!
//! Routes (spec: application-service-api, "Homeserver -> Application Service API"):
//!
//! | route | answer |
//! | --- | --- |
//! | `PUT /_matrix/app/v1/transactions/{txnId}` | `200 {}` once the driver reports the step committed |
//! | `GET /_matrix/app/v1/users/{userId}` | `200 {}` for the bot and ghosts (ghosts registered first), else `404 M_NOT_FOUND` |
//! | `GET /_matrix/app/v1/rooms/{roomAlias}` | `404 M_NOT_FOUND` (the bridge claims no aliases) |
//! | `POST /_matrix/app/v1/ping` | `200 {}` |
//! | legacy `/transactions/..`, `/users/..`, `/rooms/..` | the same |
//! | anything else | `404 M_UNRECOGNIZED`; wrong method `405 M_UNRECOGNIZED` |
//!
//! Every known route needs the hs_token, as `Authorization: Bearer` or the legacy
//! `access_token` query parameter (both checked when both are present, as the spec asks):
//! none -> `401 M_MISSING_TOKEN`, wrong -> `403 M_FORBIDDEN`.

use std::future::Future;
use std::sync::Arc;

use axum::Router;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use bytes::Bytes;
use gitter_bridge_core::{AsTxnId, Input, MatrixEvent, OwnedUserId, Secret};
use serde_json::json;
use tokio::sync::{mpsc, oneshot};

use crate::client::MatrixClient;
use crate::parse::parse_transaction;
use crate::registration::{Registration, RegistrationError};

/// Default body limit: 32 MiB. A transaction holds up to 100 PDUs of up to 64 KiB plus
/// ephemeral and to-device data, which overflows axum's 2 MiB default.
pub const DEFAULT_BODY_LIMIT: usize = 32 * 1024 * 1024;

/// One AS transaction handed to the driver. The driver feeds it to the core as
/// [`Input::Transaction`], commits the step, and only then sends `Ok(())` on `ack`; the
/// homeserver gets its 200 at that moment. `Err(reason)` (or dropping `ack`) answers
/// `500 M_UNKNOWN`, and the homeserver retries the same transaction later.
#[derive(Debug)]
pub struct AsTransaction {
    /// The homeserver's transaction id (percent-decoded).
    pub txn_id: AsTxnId,
    /// The parsed timeline events, in order.
    pub events: Vec<MatrixEvent>,
    /// Where the driver reports the commit.
    pub ack: oneshot::Sender<Result<(), String>>,
}

impl AsTransaction {
    /// The core input and the acknowledgement channel.
    pub fn into_input(self) -> (Input, oneshot::Sender<Result<(), String>>) {
        (
            Input::Transaction {
                txn_id: self.txn_id,
                events: self.events,
            },
            self.ack,
        )
    }
}

/// Where the server sends transactions.
pub type TransactionSink = mpsc::Sender<AsTransaction>;
/// Where the driver receives them.
pub type TransactionSource = mpsc::Receiver<AsTransaction>;

/// A bounded transaction channel. The homeserver sends one transaction at a time per
/// appservice, so a small capacity is enough.
pub fn transaction_channel(capacity: usize) -> (TransactionSink, TransactionSource) {
    mpsc::channel(capacity.max(1))
}

/// What the server needs to know.
#[derive(Clone, Debug)]
pub struct AsServerConfig {
    /// The homeserver's token.
    pub hs_token: Secret,
    /// The bot's user id (it always "exists").
    pub bot: OwnedUserId,
    /// The user-namespace regexes (from the registration); a user matching one is a ghost.
    pub user_namespace: Vec<regex::Regex>,
    /// Largest accepted request body, in bytes.
    pub body_limit: usize,
}

impl AsServerConfig {
    /// The server config of a registration (its hs_token, its bot, its user namespace).
    pub fn from_registration(
        registration: &Registration,
        server_name: &str,
    ) -> Result<AsServerConfig, RegistrationError> {
        let bot = format!("@{}:{server_name}", registration.sender_localpart);
        let bot = OwnedUserId::try_from(bot.clone()).map_err(|_| {
            RegistrationError::Disagrees(vec![crate::registration::Mismatch {
                key: "sender_localpart".to_owned(),
                detail: format!("{bot} is not a valid user id"),
            }])
        })?;
        Ok(AsServerConfig {
            hs_token: registration.hs_token.clone(),
            bot,
            user_namespace: registration
                .user_regexes()?
                .into_iter()
                .map(|(_, r)| r)
                .collect(),
            body_limit: DEFAULT_BODY_LIMIT,
        })
    }
}

/// Builder of the AS router.
#[derive(Clone, Debug)]
pub struct AsServer {
    config: AsServerConfig,
    sink: TransactionSink,
    client: Option<MatrixClient>,
}

#[derive(Debug)]
struct AppState {
    config: AsServerConfig,
    sink: TransactionSink,
    client: Option<MatrixClient>,
}

impl AsServer {
    /// A server that hands transactions to `sink`.
    pub fn new(config: AsServerConfig, sink: TransactionSink) -> AsServer {
        AsServer {
            config,
            sink,
            client: None,
        }
    }

    /// Registers ghosts through `client` before answering `200` to a user query (the spec's
    /// "create the user, then 200"). Without a client the server answers 200 for any ghost
    /// and the bridge registers it lazily before its first use.
    pub fn with_client(mut self, client: MatrixClient) -> AsServer {
        self.client = Some(client);
        self
    }

    /// The axum router. Serve it with [`serve`].
    pub fn router(self) -> Router {
        let body_limit = self.config.body_limit;
        let state = Arc::new(AppState {
            config: self.config,
            sink: self.sink,
            client: self.client,
        });
        Router::new()
            .route("/_matrix/app/v1/transactions/{txn_id}", put(transaction))
            .route("/_matrix/app/v1/users/{user_id}", get(query_user))
            .route("/_matrix/app/v1/rooms/{alias}", get(query_alias))
            .route("/_matrix/app/v1/ping", post(ping))
            // Legacy unprefixed paths: homeservers older than spec r0.1 / v1.1 fall back to them.
            .route("/transactions/{txn_id}", put(transaction))
            .route("/users/{user_id}", get(query_user))
            .route("/rooms/{alias}", get(query_alias))
            // `route_layer`: only matched routes are authenticated, so unknown routes and wrong
            // methods get their M_UNRECOGNIZED answer whatever the credentials.
            .route_layer(middleware::from_fn_with_state(state.clone(), authenticate))
            .method_not_allowed_fallback(method_not_allowed)
            .fallback(unrecognized)
            .layer(DefaultBodyLimit::max(body_limit))
            .with_state(state)
    }
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}

/// A Matrix error response `{"errcode","error"}`.
pub(crate) fn matrix_error(status: StatusCode, errcode: &str, error: &str) -> Response {
    (
        status,
        axum::Json(json!({ "errcode": errcode, "error": error })),
    )
        .into_response()
}

fn ok_empty() -> Response {
    (StatusCode::OK, axum::Json(json!({}))).into_response()
}

/// Constant-time equality of two secrets: the time taken does not depend on where they first
/// differ (it depends only on the longer length, which an attacker already controls).
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let len = a.len().max(b.len());
    let mut diff = u8::from(a.len() != b.len());
    for i in 0..len {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(x ^ y);
    }
    diff == 0
}

async fn authenticate(
    State(state): State<Arc<AppState>>,
    request: Request,
    next: Next,
) -> Response {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let query = request.uri().query().and_then(|q| {
        url::form_urlencoded::parse(q.as_bytes())
            .find(|(k, _)| k == "access_token")
            .map(|(_, v)| v.into_owned())
    });
    if bearer.is_none() && query.is_none() {
        tracing::warn!(path = %request.uri().path(), "AS request without a token");
        return matrix_error(
            StatusCode::UNAUTHORIZED,
            "M_MISSING_TOKEN",
            "Missing hs_token (Authorization: Bearer)",
        );
    }
    let expected = state.config.hs_token.expose().as_bytes();
    // Spec: when both are given, both must match.
    let all_match = [bearer, query]
        .iter()
        .flatten()
        .all(|token| ct_eq(token.as_bytes(), expected));
    if !all_match {
        tracing::warn!(path = %request.uri().path(), "AS request with a wrong hs_token");
        return matrix_error(
            StatusCode::FORBIDDEN,
            "M_FORBIDDEN",
            "Invalid hs_token: check that the registration file and the bridge config agree",
        );
    }
    next.run(request).await
}

async fn transaction(
    State(state): State<Arc<AppState>>,
    txn_id: Result<Path<String>, PathRejection>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let Ok(Path(txn_id)) = txn_id else {
        return matrix_error(
            StatusCode::BAD_REQUEST,
            "M_INVALID_PARAM",
            "Bad transaction id",
        );
    };
    let body = match body {
        Ok(body) => body,
        Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
            tracing::warn!(txn_id, "AS transaction over the body limit");
            return matrix_error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "M_TOO_LARGE",
                "Transaction body too large",
            );
        }
        Err(rejection) => {
            return matrix_error(
                StatusCode::BAD_REQUEST,
                "M_NOT_JSON",
                &format!("Unreadable body: {rejection}"),
            );
        }
    };
    let parsed = match parse_transaction(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(txn_id, error = %e, "refusing an AS transaction");
            return matrix_error(StatusCode::BAD_REQUEST, e.errcode(), &e.to_string());
        }
    };
    tracing::debug!(
        txn_id,
        events = parsed.events.len(),
        skipped = parsed.skipped,
        ephemeral = parsed.ephemeral,
        "AS transaction received"
    );
    let (ack, committed) = oneshot::channel();
    let sent = state
        .sink
        .send(AsTransaction {
            txn_id: AsTxnId::new(txn_id.clone()),
            events: parsed.events,
            ack,
        })
        .await;
    if sent.is_err() {
        tracing::warn!(txn_id, "AS transaction refused: the driver is not running");
        return matrix_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "The bridge is shutting down; retry later",
        );
    }
    // The 200 waits for the commit: the homeserver forgets a transaction once it has its 200,
    // so answering earlier could lose events in a crash (architecture: "commit, then 200").
    match committed.await {
        Ok(Ok(())) => ok_empty(),
        Ok(Err(reason)) => {
            tracing::warn!(
                txn_id,
                reason,
                "AS transaction not committed; the homeserver will retry"
            );
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "The bridge could not store the transaction; retry later",
            )
        }
        Err(_) => {
            tracing::warn!(
                txn_id,
                "AS transaction dropped by the driver; the homeserver will retry"
            );
            matrix_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "M_UNKNOWN",
                "The bridge dropped the transaction; retry later",
            )
        }
    }
}

async fn query_user(
    State(state): State<Arc<AppState>>,
    user_id: Result<Path<String>, PathRejection>,
) -> Response {
    let not_found = || matrix_error(StatusCode::NOT_FOUND, "M_NOT_FOUND", "No such user");
    let Ok(Path(user_id)) = user_id else {
        return not_found();
    };
    let Ok(user) = OwnedUserId::try_from(user_id) else {
        return not_found();
    };
    if user == state.config.bot {
        return ok_empty();
    }
    let is_ghost = state
        .config
        .user_namespace
        .iter()
        .any(|r| r.is_match(user.as_str()));
    if !is_ghost {
        return not_found();
    }
    if let Some(client) = &state.client
        && let Err(e) = client.register_ghost(&user).await
    {
        tracing::warn!(%user, error = %e, "could not register a ghost the homeserver asked about");
        return matrix_error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "M_UNKNOWN",
            "Could not create the user",
        );
    }
    ok_empty()
}

async fn query_alias() -> Response {
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_NOT_FOUND",
        "The bridge has no room aliases",
    )
}

async fn ping(body: Bytes) -> Response {
    let txn = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("transaction_id")?.as_str().map(str::to_owned));
    tracing::info!(
        transaction_id = txn.as_deref().unwrap_or("-"),
        "homeserver ping received"
    );
    ok_empty()
}

async fn unrecognized() -> Response {
    matrix_error(
        StatusCode::NOT_FOUND,
        "M_UNRECOGNIZED",
        "Unrecognized request",
    )
}

async fn method_not_allowed() -> Response {
    matrix_error(
        StatusCode::METHOD_NOT_ALLOWED,
        "M_UNRECOGNIZED",
        "Method not allowed on this endpoint",
    )
}

#[cfg(test)]
mod tests {
    use super::ct_eq;

    #[test]
    fn ct_eq_is_plain_equality() {
        assert!(ct_eq(b"token", b"token"));
        assert!(ct_eq(b"", b""));
        assert!(!ct_eq(b"token", b"tokeN"));
        assert!(!ct_eq(b"token", b"token\0"));
        assert!(!ct_eq(b"token\0", b"token"));
        assert!(!ct_eq(b"", b"x"));
    }
}
