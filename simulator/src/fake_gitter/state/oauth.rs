//! OAuth: the authorization-code flow with single-use codes and one token per (user,
//! client) (docs/gitter-api.md §2).

use super::*;

impl GitterState {
    /// Validate an authorize request. Errors are `(status, html message)`:
    /// the real server shows an HTML page, not JSON.
    pub fn check_authorize(
        &self,
        client_id: Option<&str>,
        redirect_uri: Option<&str>,
        response_type: Option<&str>,
    ) -> Result<(), (u16, String)> {
        if client_id != Some(self.config.client_id.as_str()) {
            return Err((401, "Unknown client_id".into()));
        }
        if redirect_uri != Some(self.config.redirect_uri.as_str()) {
            return Err((
                401,
                "Provided redirectUri does not match registered URI for client_id/clientKey".into(),
            ));
        }
        if response_type != Some("code") {
            return Err((
                400,
                "Unsupported response_type; only \"code\" is supported".into(),
            ));
        }
        Ok(())
    }

    /// Issue a single-use 40-hex authorization code for `username`
    /// (docs/gitter-api.md §2.1 step 3). Call after [`Self::check_authorize`].
    pub fn issue_code(&mut self, username: &str) -> Option<String> {
        let user_id = self.user_by_username(username)?.id.clone();
        let code = random_hex(&mut self.rng, 40);
        self.codes.insert(
            code.clone(),
            CodeRec {
                user_id,
                client_id: self.config.client_id.clone(),
                redirect_uri: self.config.redirect_uri.clone(),
            },
        );
        Some(code)
    }

    /// `POST /login/oauth/token` (docs/gitter-api.md §2.1 step 4, §2.3). The
    /// fields are the body's, form or JSON. Returns the access token.
    pub fn exchange_code(&mut self, form: &HashMap<String, String>) -> Result<String, OAuthError> {
        let get = |k: &str| form.get(k).map(String::as_str);
        // passport `oauth2-client-password`: body credentials only.
        if get("client_id") != Some(self.config.client_id.as_str())
            || get("client_secret") != Some(self.config.client_secret.as_str())
        {
            return Err(OAuthError::new(401, "server_error", "Unauthorized"));
        }
        match get("grant_type") {
            None => {
                return Err(OAuthError::new(
                    400,
                    "invalid_request",
                    "Missing required parameter: grant_type",
                ));
            }
            Some("authorization_code") => {}
            Some(other) => {
                return Err(OAuthError::new(
                    501,
                    "unsupported_grant_type",
                    format!("Unsupported grant type: {other}"),
                ));
            }
        }
        let Some(code) = get("code") else {
            return Err(OAuthError::new(
                400,
                "invalid_request",
                "Missing required parameter: code",
            ));
        };
        let invalid = || OAuthError::new(403, "invalid_grant", "Invalid authorization code");
        let rec = self.codes.get(code).ok_or_else(invalid)?;
        if rec.client_id != self.config.client_id
            || get("redirect_uri") != Some(rec.redirect_uri.as_str())
        {
            return Err(invalid());
        }
        // Single use: deleted on a successful exchange.
        let rec = self.codes.remove(code).ok_or_else(invalid)?;
        Ok(self.token_for(&rec.user_id, &rec.client_id))
    }
}
