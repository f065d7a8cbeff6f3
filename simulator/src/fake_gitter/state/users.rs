//! Users (docs/gitter-api.md §3.1).

use super::*;

impl GitterState {
    /// `GET /v1/user/:userId`: `me` or your own id, else 403.
    pub fn user_show(&self, caller: &Caller, id: &str) -> Result<Value, ApiError> {
        if id != "me" && id != caller.user_id {
            return Err(ApiError::forbidden());
        }
        let user = self
            .users
            .get(&caller.user_id)
            .ok_or_else(ApiError::unauthorized)?;
        Ok(self.user_json(user, true))
    }

    pub(super) fn check_self(&self, caller: &Caller, path_user: &str) -> Result<(), ApiError> {
        if path_user == "me" || path_user == caller.user_id {
            Ok(())
        } else {
            Err(ApiError::forbidden())
        }
    }
}
