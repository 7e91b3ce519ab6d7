//! The FunLess naming rule for modules, functions and subjects: `^[_a-zA-Z0-9]+$`, 1 to 160
//! characters.

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 160;

/// Checks `name` against the FunLess rule; the error says what is wrong with it.
pub fn validate(kind: &str, name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err(format!("{kind} name must not be empty"));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(format!(
            "{kind} name is {} characters long, at most {MAX_NAME_LEN} are allowed",
            name.len()
        ));
    }
    if let Some(bad) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '_'))
    {
        return Err(format!(
            "{kind} name {name:?} contains {bad:?}: only letters, digits and '_' are allowed"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_funless_names() {
        for ok in ["_", "hello", "Hello_World_2", &"a".repeat(160)] {
            assert!(validate("function", ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn rejects_other_names() {
        for bad in ["", "a-b", "a b", "é", "../x", "a.b", &"a".repeat(161)] {
            assert!(validate("module", bad).is_err(), "{bad}");
        }
    }
}
