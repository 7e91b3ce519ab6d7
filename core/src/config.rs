//! Configuration of functions and modules: key/value settings given to a function as its
//! environment (WASI environment variables; a second argument for JavaScript). A function's
//! own settings are part of its version; its module's are inherited, the function's winning.
//!
//! Keys are environment-variable names; the bounds keep one invocation's environment small,
//! since it travels with every invocation to the worker.

use std::collections::BTreeMap;
use std::sync::Arc;

/// Most settings one function or module holds.
pub const MAX_ENTRIES: usize = 64;
/// Longest key, bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest value, bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// A function's environment: its module's settings with its own over them, sorted by key.
pub type Env = Arc<[(String, String)]>;

/// Settings as stored (a JSON object of strings); anything else reads as none.
pub fn parse(text: &str) -> BTreeMap<String, String> {
    if text == crate::store::EMPTY_CONFIG {
        return BTreeMap::new();
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored configuration does not parse; using none");
        BTreeMap::new()
    })
}

/// Settings as stored.
pub fn to_text(settings: &BTreeMap<String, String>) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| crate::store::EMPTY_CONFIG.to_string())
}

/// The environment of a function whose module holds `module` and which holds `function`
/// (stored texts).
pub fn effective(module: &str, function: &str) -> Env {
    let store = crate::store::EMPTY_CONFIG;
    if module == store && function == store {
        return Arc::from(Vec::new());
    }
    let mut merged = parse(module);
    merged.extend(parse(function));
    merged.into_iter().collect()
}

/// `current` with `set` applied, then `unset` removed: the new settings, or why not.
pub fn apply(
    current: &BTreeMap<String, String>,
    set: &BTreeMap<String, String>,
    unset: &[String],
) -> Result<BTreeMap<String, String>, String> {
    if set.is_empty() && unset.is_empty() {
        return Err("give settings to 'set', keys to 'unset', or both".into());
    }
    if let Some(both) = unset.iter().find(|k| set.contains_key(*k)) {
        return Err(format!("{both:?} is both set and unset"));
    }
    for (key, value) in set {
        check_key(key)?;
        if value.len() > MAX_VALUE_BYTES {
            return Err(format!(
                "the value of {key:?} is {} bytes, at most {MAX_VALUE_BYTES} are allowed",
                value.len()
            ));
        }
        if value.contains('\0') {
            return Err(format!("the value of {key:?} contains a NUL character"));
        }
    }
    for key in unset {
        check_key(key)?;
    }
    let mut next = current.clone();
    next.extend(set.iter().map(|(k, v)| (k.clone(), v.clone())));
    for key in unset {
        next.remove(key);
    }
    if next.len() > MAX_ENTRIES {
        return Err(format!(
            "{} settings; at most {MAX_ENTRIES} are allowed",
            next.len()
        ));
    }
    Ok(next)
}

/// An environment variable's name: a letter or `_`, then letters, digits and `_`.
fn check_key(key: &str) -> Result<(), String> {
    let mut chars = key.chars();
    let valid = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
    if !valid || key.len() > MAX_KEY_LEN {
        return Err(format!(
            "{key:?} is not a setting name: a letter or '_', then letters, digits or '_', \
             at most {MAX_KEY_LEN} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn the_function_wins_over_its_module() {
        let env = effective(
            r#"{"A":"module","B":"module"}"#,
            r#"{"B":"function","C":"c"}"#,
        );
        let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(pairs, [("A", "module"), ("B", "function"), ("C", "c")]);
        assert!(effective("{}", "{}").is_empty());
        assert!(effective("not json", "{}").is_empty());
    }

    #[test]
    fn changes_are_checked_before_they_apply() {
        let current = map(&[("A", "1"), ("B", "2")]);
        let next = apply(&current, &map(&[("C", "3")]), &["A".into()]).expect("valid");
        assert_eq!(next, map(&[("B", "2"), ("C", "3")]));
        assert_eq!(to_text(&next), r#"{"B":"2","C":"3"}"#);
        // Unsetting what is not there is not an error.
        assert_eq!(
            apply(&current, &BTreeMap::new(), &["Z".into()]).expect("valid"),
            current
        );
        for (set, unset) in [
            (map(&[]), vec![]),
            (map(&[("1A", "x")]), vec![]),
            (map(&[("A-B", "x")]), vec![]),
            (map(&[("", "x")]), vec![]),
            (map(&[("A", "x\0y")]), vec![]),
            (map(&[("A", "x")]), vec!["A".to_string()]),
            (map(&[]), vec!["a b".to_string()]),
        ] {
            assert!(apply(&current, &set, &unset).is_err(), "{set:?} {unset:?}");
        }
        let long_value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(apply(&current, &map(&[("A", &long_value)]), &[]).is_err());
        let long_key = "K".repeat(MAX_KEY_LEN + 1);
        assert!(apply(&current, &map(&[(&long_key, "v")]), &[]).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_ENTRIES)
            .map(|i| (format!("K{i}"), "v".to_string()))
            .collect();
        assert!(apply(&BTreeMap::new(), &many, &[]).is_err());
    }
}
