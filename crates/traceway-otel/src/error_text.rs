//! Text for people: an error with its causes on one line, for export failures and upstream
//! transport errors alike; a URL as it may be shown in errors and spans.

/// `url`'s origin and path: never its credentials or query, either of which may hold a key.
pub fn shown_url(url: &url::Url) -> String {
    let mut shown = url.origin().ascii_serialization();
    shown.push_str(url.path());
    shown
}

/// `e`'s message followed by those of its sources, `: `-separated, without repeats (a source
/// whose text its wrapper already shows); with `include_self` false, only the sources (or `e`
/// itself when it has none).
pub fn error_chain(e: &(dyn std::error::Error + 'static), include_self: bool) -> String {
    let mut parts: Vec<String> = Vec::new();
    if include_self {
        parts.push(e.to_string());
    }
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        source = s.source();
    }
    if parts.is_empty() {
        parts.push(e.to_string());
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::shown_url;

    #[test]
    fn a_shown_url_keeps_origin_and_path_only() {
        for (url, shown) in [
            (
                "https://user:sk-secret@api.example.com/v1/chat?key=sk-q#f",
                "https://api.example.com/v1/chat",
            ),
            (
                "http://127.0.0.1:4318/v1/traces",
                "http://127.0.0.1:4318/v1/traces",
            ),
            ("https://api.openai.com", "https://api.openai.com/"),
        ] {
            assert_eq!(shown_url(&url::Url::parse(url).unwrap()), shown, "{url}");
        }
    }
}
