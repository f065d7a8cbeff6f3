//! (in progress)
/// Sanitises Gitter HTML.
pub fn sanitize_html(html: &str) -> String {
    html.to_owned()
}
