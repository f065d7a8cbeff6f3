//! (in progress)
/// The ghost localpart.
pub fn ghost_localpart(template: &str, username: &str) -> String {
    template.replace("{username}", username)
}
