//! Validation of user-chosen names and passwords, and the keys under which names are unique:
//! [`fold`] (case-insensitive) for usernames, [`room_name_key`] (case-insensitive and
//! look-alike-insensitive) for room names. The error strings are human-readable reasons
//! suitable for an API error message.

use crate::text;

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

/// The longest room name, in characters (after normalisation).
pub const MAX_ROOM_NAME_CHARS: usize = 64;

/// Normalises a room name and checks it; returns the name to store, or why it is refused.
///
/// The name is put in NFC, trimmed, and each run of whitespace inside it becomes one space.
/// Refused: control characters, bidirectional controls (they reorder what is shown),
/// invisible characters other than the joiners and selectors that visible text needs (see
/// [`text::is_joining_invisible`]), a name that shows nothing, and names over
/// [`MAX_ROOM_NAME_CHARS`]. Uniqueness is decided by [`room_name_key`].
pub fn normalize_room_name(name: &str) -> Result<String, String> {
    let name = text::nfc(name);
    if let Some(c) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "room name must not contain control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if let Some(c) = name.chars().find(|c| text::is_bidi_control(*c)) {
        return Err(format!(
            "room name must not contain bidirectional control characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| text::is_invisible(*c) && !text::is_joining_invisible(*c))
    {
        return Err(format!(
            "room name must not contain invisible characters (found U+{:04X})",
            u32::from(c)
        ));
    }
    let mut normalized = String::with_capacity(name.len());
    for word in name.split(text::is_whitespace).filter(|w| !w.is_empty()) {
        if !normalized.is_empty() {
            normalized.push(' ');
        }
        normalized.push_str(word);
    }
    if text::is_blank(&normalized) {
        return Err("room name must contain a visible character".into());
    }
    if normalized.chars().count() > MAX_ROOM_NAME_CHARS {
        return Err(format!(
            "room name must be at most {MAX_ROOM_NAME_CHARS} characters"
        ));
    }
    Ok(normalized)
}

/// The key under which room names are unique: two names are the same name when, ignoring
/// case, they look alike ([`text::lookalike_key`]).
pub fn room_name_key(name: &str) -> String {
    text::lookalike_key(name)
}

/// The case-insensitive key of a username (its lowercase form): two usernames are the same
/// name when their folds are equal.
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
        assert_eq!(
            normalize_room_name("Cafe\u{301}").as_deref(),
            Ok("Caf\u{e9}"),
            "NFC"
        );
        assert_eq!(
            normalize_room_name("open \u{3000}  space").as_deref(),
            Ok("open space")
        );
        for legit in [
            "Общий чат",
            "一般",
            "عام",
            "👨\u{200d}👩\u{200d}👧 family",
            "\u{2764}\u{fe0f} love",
            "می\u{200c}خواهم",
        ] {
            assert_eq!(
                normalize_room_name(legit).as_deref(),
                Ok(legit),
                "{legit:?}"
            );
        }
        for bad in [
            "",
            "   ",
            &"r".repeat(65),
            "a\u{0}b",
            "line\nbreak",
            "bell\u{7}",
            "general\u{200b}",
            "gen\u{202e}eral",
            "\u{2066}x\u{2069}",
            "\u{feff}bom",
            "\u{200d}\u{200d}",
            "\u{2800}",
            "soft\u{ad}hyphen",
        ] {
            assert!(normalize_room_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn room_name_keys() {
        let general = room_name_key("General");
        assert_eq!(room_name_key("general"), general);
        assert_eq!(room_name_key("Genera\u{217c}"), general);
        assert_eq!(room_name_key("General\u{200d}"), general);
        assert_ne!(room_name_key("Generals"), general);
    }

    #[test]
    fn folding() {
        assert_eq!(fold("Alice"), fold("aLICE"));
        assert_eq!(fold("Café"), "café");
        assert_ne!(fold("alice"), fold("alice2"));
    }
}
