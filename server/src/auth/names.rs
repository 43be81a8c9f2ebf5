//! Validation of user-chosen names and passwords, and [`fold`], the case-insensitive key under
//! which usernames and room names are unique. The error strings are human-readable reasons
//! suitable for an API error message.

/// Checks a username: 3–32 characters, each one of `A–Z a–z 0–9 _ . -`.
pub fn validate_username(username: &str) -> Result<(), &'static str> {
    let len = username.chars().count();
    if !(3..=32).contains(&len) {
        return Err("username must be 3 to 32 characters");
    }
    if !username
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
    {
        return Err("username may contain only letters A-Z a-z, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// Checks a password: 8–256 characters.
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    let len = password.chars().count();
    if !(8..=256).contains(&len) {
        return Err("password must be 8 to 256 characters");
    }
    Ok(())
}

/// Trims a room name and checks it: 1–64 characters after trimming, no control characters.
/// Returns the trimmed name.
pub fn normalize_room_name(name: &str) -> Result<String, &'static str> {
    let name = name.trim();
    let len = name.chars().count();
    if !(1..=64).contains(&len) {
        return Err("room name must be 1 to 64 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("room name must not contain control characters");
    }
    Ok(name.to_owned())
}

/// The case-insensitive key of a name (its lowercase form): two names are the same name when
/// their folds are equal.
pub fn fold(name: &str) -> String {
    name.to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["abc", "Alice_01", "a.b-c", &"x".repeat(32)] {
            assert_eq!(validate_username(ok), Ok(()), "{ok:?}");
        }
        for bad in [
            "",
            "ab",
            &"x".repeat(33),
            "with space",
            "émile",
            "semi;colon",
            "tab\tx",
        ] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn passwords() {
        assert!(validate_password("1234567").is_err());
        assert_eq!(validate_password("12345678"), Ok(()));
        assert_eq!(validate_password(&"é".repeat(256)), Ok(()));
        assert!(validate_password(&"p".repeat(257)).is_err());
    }

    #[test]
    fn room_names() {
        assert_eq!(normalize_room_name("  General  ").as_deref(), Ok("General"));
        assert_eq!(normalize_room_name("café ☕").as_deref(), Ok("café ☕"));
        assert_eq!(normalize_room_name(&"r".repeat(64)), Ok("r".repeat(64)));
        for bad in [
            "",
            "   ",
            &"r".repeat(65),
            "a\u{0}b",
            "line\nbreak",
            "bell\u{7}",
        ] {
            assert!(normalize_room_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn folding() {
        assert_eq!(fold("Alice"), fold("aLICE"));
        assert_eq!(fold("Café"), "café");
        assert_ne!(fold("alice"), fold("alice2"));
    }
}
