//! Who is calling and how often: bearer tokens (docs/gitter-api.md §1.2) and the
//! fixed-window rate limit (§8).

use super::*;

impl GitterState {
    /// Look up a bearer token (docs/gitter-api.md §1.2). Unknown or revoked: 401.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Caller, ApiError> {
        let token = token.ok_or_else(ApiError::unauthorized)?;
        let rec = self.tokens.get(token).ok_or_else(ApiError::unauthorized)?;
        if !self.users.contains_key(&rec.user_id) {
            return Err(ApiError::unauthorized());
        }
        Ok(Caller {
            user_id: rec.user_id.clone(),
            client_id: rec.client_id.clone(),
            token: token.to_string(),
        })
    }

    /// Count one request against the fixed window of (user, client)
    /// (docs/gitter-api.md §8, dolph `INCR` + `EXPIRE`). `Err` means 429; both
    /// variants carry the header values, which go on every limited response.
    pub fn rate_check(&mut self, caller: &Caller, now_ms: u64) -> Result<RateInfo, RateInfo> {
        let window = self.config.rate_window.as_millis() as u64;
        let limit = self.config.rate_limit;
        let key = (caller.user_id.clone(), caller.client_id.clone());
        let entry = self.rate.entry(key).or_insert((now_ms, 0));
        if now_ms >= entry.0 + window {
            *entry = (now_ms, 0);
        }
        entry.1 = entry.1.saturating_add(1);
        let info = RateInfo {
            limit,
            remaining: limit.saturating_sub(entry.1),
            reset_ms: entry.0 + window,
        };
        if entry.1 > limit { Err(info) } else { Ok(info) }
    }
}
