//! Configuration of functions and modules: key/value settings given to a function as its
//! environment (WASI environment variables; a second argument for JavaScript). A function's
//! own settings are part of its version; its module's are inherited, the function's winning.
//!
//! A setting is a value, or a reference to one of its writer's secrets (`crate::secrets`),
//! opened only when an invocation's environment is built. Keys are environment-variable names;
//! the bounds keep one invocation's environment small, since it travels with every invocation
//! to the worker.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Most settings one function or module holds.
pub const MAX_ENTRIES: usize = 64;
/// Longest key, bytes.
pub const MAX_KEY_LEN: usize = 128;
/// Longest value, bytes.
pub const MAX_VALUE_BYTES: usize = 4096;

/// An environment: names and values, sorted by name.
pub type Env = Arc<[(String, String)]>;

/// One stored setting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Setting {
    /// A value, as given.
    Value(String),
    /// The value of secret `secret` of subject `owner`.
    Secret {
        /// The secret's name.
        secret: String,
        /// The subject that holds it (the one that set the reference).
        owner: i64,
    },
}

/// Settings by name, as stored.
pub type Settings = BTreeMap<String, Setting>;

/// A setting whose value is a secret, opened when an invocation needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretRef {
    /// The environment variable's name.
    pub key: String,
    /// The subject that holds the secret.
    pub owner: i64,
    /// The secret's name.
    pub name: String,
}

/// What a function's invocations get: its module's settings with its own over them.
#[derive(Debug, Clone, Default)]
pub struct Environment {
    /// The settings that are values.
    pub values: Env,
    /// The settings that are secrets.
    pub secrets: Arc<[SecretRef]>,
}

/// Settings as stored (a JSON object); anything else reads as none.
pub fn parse(text: &str) -> Settings {
    if text == crate::store::EMPTY_CONFIG {
        return Settings::new();
    }
    serde_json::from_str(text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "stored configuration does not parse; using none");
        Settings::new()
    })
}

/// Settings as stored.
pub fn to_text(settings: &Settings) -> String {
    serde_json::to_string(settings).unwrap_or_else(|_| crate::store::EMPTY_CONFIG.to_string())
}

/// The values of `settings` (secrets left out), and the names of the secrets they refer to.
pub fn split(settings: &Settings) -> (BTreeMap<String, String>, BTreeMap<String, String>) {
    let (mut values, mut secrets) = (BTreeMap::new(), BTreeMap::new());
    for (key, setting) in settings {
        match setting {
            Setting::Value(value) => values.insert(key.clone(), value.clone()),
            Setting::Secret { secret, .. } => secrets.insert(key.clone(), secret.clone()),
        };
    }
    (values, secrets)
}

/// `module` with `function` over it (stored texts).
pub fn merged(module: &str, function: &str) -> Settings {
    let mut merged = parse(module);
    merged.extend(parse(function));
    merged
}

/// The environment of a function whose module holds `module` and which holds `function`
/// (stored texts).
pub fn effective(module: &str, function: &str) -> Environment {
    let empty = crate::store::EMPTY_CONFIG;
    if module == empty && function == empty {
        return Environment::default();
    }
    let (mut values, mut secrets) = (Vec::new(), Vec::new());
    for (key, setting) in merged(module, function) {
        match setting {
            Setting::Value(value) => values.push((key, value)),
            Setting::Secret { secret, owner } => secrets.push(SecretRef {
                key,
                owner,
                name: secret,
            }),
        }
    }
    Environment {
        values: values.into(),
        secrets: secrets.into(),
    }
}

/// A change of settings: values to set, secrets (by name, held by `owner`) to bind, names to
/// remove.
#[derive(Debug, Clone, Copy)]
pub struct Change<'a> {
    /// Names and values.
    pub set: &'a BTreeMap<String, String>,
    /// Names and the secrets their values come from.
    pub secrets: &'a BTreeMap<String, String>,
    /// The subject whose secrets those are.
    pub owner: i64,
    /// Names to remove.
    pub unset: &'a [String],
}

/// `current` with `change` applied: the new settings, or why not.
pub fn apply(current: &Settings, change: Change<'_>) -> Result<Settings, String> {
    let Change {
        set,
        secrets,
        owner,
        unset,
    } = change;
    if set.is_empty() && secrets.is_empty() && unset.is_empty() {
        return Err(
            "give settings to 'set', secrets to 'secrets', keys to 'unset', or some of them".into(),
        );
    }
    if let Some(both) = set.keys().find(|k| secrets.contains_key(*k)) {
        return Err(format!("{both:?} is both a value and a secret"));
    }
    if let Some(both) = unset
        .iter()
        .find(|k| set.contains_key(*k) || secrets.contains_key(*k))
    {
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
    for key in secrets.keys().chain(unset) {
        check_key(key)?;
    }
    let mut next = current.clone();
    next.extend(
        set.iter()
            .map(|(k, v)| (k.clone(), Setting::Value(v.clone()))),
    );
    next.extend(secrets.iter().map(|(k, name)| {
        (
            k.clone(),
            Setting::Secret {
                secret: name.clone(),
                owner,
            },
        )
    }));
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
pub fn check_key(key: &str) -> Result<(), String> {
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

    fn values(pairs: &[(&str, &str)]) -> Settings {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), Setting::Value(v.to_string())))
            .collect()
    }

    fn change<'a>(
        set: &'a BTreeMap<String, String>,
        secrets: &'a BTreeMap<String, String>,
        unset: &'a [String],
    ) -> Change<'a> {
        Change {
            set,
            secrets,
            owner: 7,
            unset,
        }
    }

    #[test]
    fn the_function_wins_over_its_module() {
        let env = effective(
            r#"{"A":"module","B":"module","S":{"secret":"db","owner":3}}"#,
            r#"{"B":"function","C":"c"}"#,
        );
        let pairs: Vec<(&str, &str)> = env.values.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(pairs, [("A", "module"), ("B", "function"), ("C", "c")]);
        assert_eq!(
            &*env.secrets,
            [SecretRef {
                key: "S".into(),
                owner: 3,
                name: "db".into()
            }]
        );
        // A function's value hides its module's secret of the same name.
        let env = effective(r#"{"S":{"secret":"db","owner":3}}"#, r#"{"S":"plain"}"#);
        assert!(env.secrets.is_empty());
        assert!(effective("{}", "{}").values.is_empty());
        assert!(effective("not json", "{}").values.is_empty());
    }

    #[test]
    fn changes_are_checked_before_they_apply() {
        let current = values(&[("A", "1"), ("B", "2")]);
        let none = BTreeMap::new();
        let next = apply(
            &current,
            change(&map(&[("C", "3")]), &map(&[("D", "db")]), &["A".into()]),
        )
        .expect("valid");
        assert_eq!(
            to_text(&next),
            r#"{"B":"2","C":"3","D":{"secret":"db","owner":7}}"#
        );
        assert_eq!(parse(&to_text(&next)), next);
        let (plain, secrets) = split(&next);
        assert_eq!(
            (plain, secrets),
            (map(&[("B", "2"), ("C", "3")]), map(&[("D", "db")]))
        );
        // Unsetting what is not there is not an error.
        assert_eq!(
            apply(&current, change(&none, &none, &["Z".into()])).expect("valid"),
            current
        );
        for (set, secrets, unset) in [
            (map(&[]), map(&[]), vec![]),
            (map(&[("1A", "x")]), map(&[]), vec![]),
            (map(&[("A-B", "x")]), map(&[]), vec![]),
            (map(&[("", "x")]), map(&[]), vec![]),
            (map(&[("A", "x\0y")]), map(&[]), vec![]),
            (map(&[("A", "x")]), map(&[]), vec!["A".to_string()]),
            (map(&[]), map(&[("S", "db")]), vec!["S".to_string()]),
            (map(&[("S", "x")]), map(&[("S", "db")]), vec![]),
            (map(&[]), map(&[("9S", "db")]), vec![]),
            (map(&[]), map(&[]), vec!["a b".to_string()]),
        ] {
            assert!(
                apply(&current, change(&set, &secrets, &unset)).is_err(),
                "{set:?} {secrets:?} {unset:?}"
            );
        }
        let long_value = "v".repeat(MAX_VALUE_BYTES + 1);
        assert!(apply(&current, change(&map(&[("A", &long_value)]), &none, &[])).is_err());
        let long_key = "K".repeat(MAX_KEY_LEN + 1);
        assert!(apply(&current, change(&map(&[(&long_key, "v")]), &none, &[])).is_err());
        let many: BTreeMap<String, String> = (0..=MAX_ENTRIES)
            .map(|i| (format!("K{i}"), "v".to_string()))
            .collect();
        assert!(apply(&Settings::new(), change(&many, &none, &[])).is_err());
    }
}
