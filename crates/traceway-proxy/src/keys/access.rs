//! Which models a key (and its team) may call: exact model groups, wildcard patterns
//! (`openai/*`, `bedrock/anthropic.*`) matched against the group name and against the
//! `provider/model` of the group's deployments, and LiteLLM's special names.

use super::KeyInfo;

/// In a `models` list: every model the proxy serves.
pub const ALL_PROXY_MODELS: &str = "all-proxy-models";
/// In a key's `models` list: whatever its team may call.
pub const ALL_TEAM_MODELS: &str = "all-team-models";

/// Which list refused the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Denied {
    /// The key's own `models`.
    Key,
    /// Its team's `models`.
    Team,
}

/// `*` matches any run of characters; everything else matches itself.
fn glob(pattern: &str, text: &str) -> bool {
    let mut parts = pattern.split('*');
    let Some(first) = parts.next() else {
        return text.is_empty();
    };
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for p in middle {
        match rest.find(p) {
            Some(i) => rest = &rest[i + p.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// Whether `list` lets `model` through; an empty list lets everything through.
fn allows(list: &[String], model: &str, provider_models: &[&str]) -> bool {
    list.is_empty()
        || list.iter().any(|entry| {
            let entry = entry.as_str();
            entry == ALL_PROXY_MODELS
                || entry == model
                || (entry.contains('*')
                    && (glob(entry, model) || provider_models.iter().any(|p| glob(entry, p))))
        })
}

/// Checks `model` (with the `provider/model` of its deployments, if it is a group the proxy
/// serves) against the key's list, then its team's.
pub fn check(info: &KeyInfo, model: &str, provider_models: &[&str]) -> Result<(), Denied> {
    let defers_to_team = info.models.iter().any(|m| m == ALL_TEAM_MODELS);
    if !defers_to_team && !allows(&info.models, model, provider_models) {
        return Err(Denied::Key);
    }
    if info.team_id.is_some() && !allows(&info.team_models, model, provider_models) {
        return Err(Denied::Team);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(models: &[&str], team: &[&str]) -> KeyInfo {
        KeyInfo {
            models: models.iter().map(|s| s.to_string()).collect(),
            team_models: team.iter().map(|s| s.to_string()).collect(),
            team_id: (!team.is_empty()).then(|| "t".to_owned()),
            ..KeyInfo::default()
        }
    }

    #[test]
    fn globs() {
        assert!(glob("openai/*", "openai/gpt-4o"));
        assert!(glob("bedrock/anthropic.*", "bedrock/anthropic.claude-3"));
        assert!(!glob("bedrock/anthropic.*", "bedrock/meta.llama"));
        assert!(glob("*", ""));
        assert!(glob("a*b*c", "aXbYc"));
        assert!(!glob("a*b*c", "aXbY"));
        assert!(!glob("ab*ba", "aba"));
        assert!(glob("gpt-4", "gpt-4") && !glob("gpt-4", "gpt-4o"));
    }

    #[test]
    fn key_then_team_lists() {
        let oa = ["openai/gpt-4o-mini"];
        assert_eq!(check(&key(&[], &[]), "gpt", &oa), Ok(()));
        assert_eq!(check(&key(&["gpt"], &[]), "gpt", &oa), Ok(()));
        assert_eq!(check(&key(&["other"], &[]), "gpt", &oa), Err(Denied::Key));
        assert_eq!(check(&key(&["openai/*"], &[]), "gpt", &oa), Ok(()));
        assert_eq!(
            check(&key(&["openai/*"], &[]), "openai/gpt-4o", &[]),
            Ok(())
        );
        assert_eq!(
            check(&key(&["anthropic/*"], &[]), "gpt", &oa),
            Err(Denied::Key)
        );
        assert_eq!(check(&key(&[ALL_PROXY_MODELS], &[]), "gpt", &oa), Ok(()));
        assert_eq!(check(&key(&[], &["gpt"]), "gpt", &oa), Ok(()));
        assert_eq!(check(&key(&[], &["other"]), "gpt", &oa), Err(Denied::Team));
        assert_eq!(
            check(&key(&[ALL_TEAM_MODELS], &["other"]), "gpt", &oa),
            Err(Denied::Team)
        );
        assert_eq!(
            check(&key(&[ALL_TEAM_MODELS], &["gpt"]), "gpt", &oa),
            Ok(())
        );
        assert_eq!(
            check(&key(&["gpt"], &["other"]), "gpt", &oa),
            Err(Denied::Team)
        );
    }
}
