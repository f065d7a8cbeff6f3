//! OAuth2 authorization-code flow against Gitter (docs/gitter-api.md §2), with the `oauth2` crate.
//!
//! Gitter's quirks, and how they are met here:
//! * Client authentication goes **in the body** only: HTTP Basic is commented out on the
//!   server (§2.1 step 4), hence [`AuthType::RequestBody`].
//! * The token answer is `{"access_token":"..","token_type":"Bearer"}` with no expiry, no
//!   refresh token, no scope (§2.2). The docs say `bearer`. oauth2 5's `BasicTokenType`
//!   parses only lowercase `"bearer"` as `Bearer` and keeps `"Bearer"` as
//!   `Extension("Bearer")`, so the type is checked here by comparing its string without
//!   regard to case.
//! * Gitter has no scopes (§2.1 step 2): none are asked for.
//! * The docs describe a form-encoded token answer; the 2020 code always sends JSON (§2.2).
//!   Both are read: a form body is turned into the JSON oauth2 expects.
//! * oauth2 5's own reqwest glue targets reqwest 0.12; [`OAuthHttp`] implements its
//!   `AsyncHttpClient` over our reqwest 0.13 client and remembers the status code, which the
//!   crate's error type drops but the failure classification needs.
//! * The exchange runs inside a user's lane, so it has a deadline (the whole request, answer
//!   included) and reads at most [`OAUTH_BODY_LIMIT`] of the answer: a token endpoint that
//!   never answered once held a lane for more than 137 s (issue 12). Both are applied in
//!   [`OAuthHttp`], since oauth2 reads nothing itself.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use gitter_bridge_core::Secret;
use oauth2::basic::BasicClient;
use oauth2::{
    AsyncHttpClient, AuthType, AuthUrl, AuthorizationCode, ClientId, ClientSecret, CsrfToken,
    EndpointNotSet, EndpointSet, HttpClientError, HttpRequest, HttpResponse, RedirectUrl,
    RequestTokenError, TokenResponse, TokenUrl,
};
use url::Url;

use crate::client::{read_capped, read_error_body};
use crate::error::GitterError;

/// Largest token answer read. The answer is one short JSON object (§2.2).
pub const OAUTH_BODY_LIMIT: usize = 64 * 1024;

/// The exchange's time limit unless [`GitterOAuth::with_timeout`] says otherwise (the
/// [`GitterClient`](crate::GitterClient) passes its `request_timeout`).
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// The OAuth application registered with Gitter.
#[derive(Clone, Debug)]
pub struct OAuthConfig {
    /// `GET .../login/oauth/authorize`.
    pub authorize_url: Url,
    /// `POST .../login/oauth/token`.
    pub token_url: Url,
    /// The client id ("key").
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The one registered redirect URI (must match exactly, §2.1).
    pub redirect_uri: Url,
}

type Client = BasicClient<EndpointSet, EndpointNotSet, EndpointNotSet, EndpointNotSet, EndpointSet>;

/// Builds authorize URLs and exchanges codes for tokens.
#[derive(Clone, Debug)]
pub struct GitterOAuth {
    client: Client,
    http: reqwest::Client,
    timeout: Option<Duration>,
}

impl GitterOAuth {
    /// An OAuth helper for this app, sending with `http` (which should not follow redirects).
    /// A code exchange has 30 s from connecting to the answer's last byte; see
    /// [`GitterOAuth::with_timeout`].
    pub fn new(config: &OAuthConfig, http: reqwest::Client) -> Self {
        let client = BasicClient::new(ClientId::new(config.client_id.clone()))
            .set_client_secret(ClientSecret::new(config.client_secret.expose().to_owned()))
            .set_auth_uri(AuthUrl::from_url(config.authorize_url.clone()))
            .set_token_uri(TokenUrl::from_url(config.token_url.clone()))
            .set_redirect_uri(RedirectUrl::from_url(config.redirect_uri.clone()))
            .set_auth_type(AuthType::RequestBody);
        Self {
            client,
            http,
            timeout: Some(DEFAULT_TIMEOUT),
        }
    }

    /// The same helper with this time limit per code exchange (`None`: no limit, only for
    /// tests on a paused clock).
    pub fn with_timeout(mut self, timeout: Option<Duration>) -> Self {
        self.timeout = timeout;
        self
    }

    /// The URL to send the browser to:
    /// `<authorize>?response_type=code&client_id=..&state=..&redirect_uri=..`.
    pub fn authorize_url(&self, state: &str) -> Url {
        let state = state.to_owned();
        let (url, _) = self
            .client
            .authorize_url(move || CsrfToken::new(state))
            .url();
        url
    }

    /// Exchanges an authorization code for an access token (form body with `grant_type`,
    /// `code`, `redirect_uri`, `client_id`, `client_secret`; `Accept: application/json`).
    /// Not retried: a code is single-use, so a retry after a lost answer could only fail.
    pub async fn exchange_code(&self, code: &Secret) -> Result<Secret, GitterError> {
        let http = OAuthHttp {
            http: &self.http,
            timeout: self.timeout,
            status: AtomicU16::new(0),
        };
        let result = self
            .client
            .exchange_code(AuthorizationCode::new(code.expose().to_owned()))
            .request_async(&http)
            .await;
        let status = match http.status.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        };
        let response = result.map_err(|e| exchange_error(e, status))?;
        let token_type = response.token_type().as_ref();
        if !token_type.eq_ignore_ascii_case("bearer") {
            return Err(GitterError::OAuth {
                status,
                error: format!("unsupported token_type {token_type:?}"),
            });
        }
        let token = response.access_token().secret();
        if token.is_empty() {
            return Err(GitterError::OAuth {
                status,
                error: "empty access_token".to_owned(),
            });
        }
        Ok(Secret::new(token.clone()))
    }
}

/// Classifies what oauth2 reports. Nothing here can hold the code, secret or token: oauth2
/// errors carry the server's `error`/`error_description`, parse errors and transport errors.
fn exchange_error(
    e: RequestTokenError<
        HttpClientError<GitterError>,
        oauth2::StandardErrorResponse<oauth2::basic::BasicErrorResponseType>,
    >,
    status: Option<u16>,
) -> GitterError {
    match e {
        RequestTokenError::ServerResponse(r) => {
            let mut error = r.error().to_string();
            if let Some(d) = r.error_description() {
                error = format!("{error}: {d}");
            }
            GitterError::OAuth { status, error }
        }
        // Transport trouble (time-out, connection) or an oversize answer, already classified.
        RequestTokenError::Request(HttpClientError::Reqwest(e)) => *e,
        RequestTokenError::Request(other) => GitterError::OAuth {
            status,
            error: other.to_string(),
        },
        RequestTokenError::Parse(e, _body) => GitterError::OAuth {
            // A 200 that does not parse is the server's fault; report it as a rejection
            // rather than a transient fault.
            status: status.or(Some(200)),
            // Only the path: serde's message could quote a value from the body.
            error: format!("unreadable token response (at `{}`)", e.path()),
        },
        RequestTokenError::Other(s) => GitterError::OAuth { status, error: s },
    }
}

/// oauth2's HTTP client trait over our reqwest 0.13 client (see the module docs), with the
/// exchange's deadline and the capped read of the answer. Its errors are already
/// [`GitterError`]s, so a time-out reads as a network fault and an oversize answer as
/// [`GitterError::TooLarge`].
struct OAuthHttp<'a> {
    http: &'a reqwest::Client,
    timeout: Option<Duration>,
    status: AtomicU16,
}

impl<'c> AsyncHttpClient<'c> for OAuthHttp<'_> {
    type Error = HttpClientError<GitterError>;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(async move {
            let mut request = reqwest::Request::try_from(request).map_err(|e| {
                Box::new(GitterError::Config(format!(
                    "OAuth token request: {}",
                    e.without_url()
                )))
            })?;
            // From connecting to the answer's last byte: reqwest carries a request's timeout
            // into its body.
            *request.timeout_mut() = self.timeout;
            let response = self
                .http
                .execute(request)
                .await
                .map_err(|e| Box::new(GitterError::network(&e, 1)))?;
            let status = response.status();
            self.status.store(status.as_u16(), Ordering::Relaxed);
            let form = response
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| {
                    v.to_ascii_lowercase()
                        .starts_with("application/x-www-form-urlencoded")
                });
            let mut builder = oauth2::http::Response::builder().status(response.status());
            for (name, value) in response.headers() {
                if !(form && name == reqwest::header::CONTENT_TYPE) {
                    builder = builder.header(name, value);
                }
            }
            let body = if status.is_success() {
                read_capped(response, OAUTH_BODY_LIMIT).await.map_err(|e| {
                    let e = e.into_gitter(1);
                    if let GitterError::TooLarge { .. } = e {
                        tracing::warn!("OAuth token endpoint: {e}");
                    }
                    Box::new(e)
                })?
            } else {
                // oauth2 reads `error`/`error_description` from it; an unreadable one leaves
                // the status, which classifies the failure anyway.
                read_error_body(response).await
            };
            let body = if form {
                builder = builder.header(reqwest::header::CONTENT_TYPE, "application/json");
                form_to_json(&body)
            } else {
                body.to_vec()
            };
            builder.body(body).map_err(HttpClientError::Http)
        })
    }
}

/// The docs' form-encoded token answer (`access_token=..&token_type=bearer&expires_in=..`,
/// docs/gitter-api.md §2.2) as the JSON oauth2 reads; the 2020 server always sends JSON, an older
/// one may not. `expires_in` is a number in JSON.
fn form_to_json(body: &[u8]) -> Vec<u8> {
    let object: serde_json::Map<String, serde_json::Value> = url::form_urlencoded::parse(body)
        .map(|(k, v)| {
            let value = match (k.as_ref(), v.parse::<u64>()) {
                ("expires_in", Ok(n)) => serde_json::Value::from(n),
                _ => serde_json::Value::from(v.into_owned()),
            };
            (k.into_owned(), value)
        })
        .collect();
    serde_json::Value::Object(object).to_string().into_bytes()
}
