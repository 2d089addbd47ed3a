//! Error text for people: an error with its causes on one line, for export failures and
//! upstream transport errors alike.

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
