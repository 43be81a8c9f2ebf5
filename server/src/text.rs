//! What counts as visible text, for names and message bodies: NFC normalisation, invisible and
//! bidirectional-control characters, and the look-alike key that makes confusable names equal.
//!
//! The character properties come from Unicode's own data (ICU4X's `icu_properties` and
//! `icu_normalizer`, already in the server's dependency tree through `url`), and the confusable
//! skeleton from `unicode-security` (UTS #39, the crate rustc's confusable-identifier lint
//! uses). Nothing here allocates more than a copy of its input.

use std::borrow::Cow;

use icu_normalizer::ComposingNormalizerBorrowed;
use icu_properties::CodePointSetData;
use icu_properties::props::{BidiControl, DefaultIgnorableCodePoint, WhiteSpace};

/// `s` in Normalization Form C (composed: "e" + U+0301 becomes "é").
pub fn nfc(s: &str) -> Cow<'_, str> {
    ComposingNormalizerBorrowed::new_nfc().normalize(s)
}

/// Whether `c` is a bidirectional formatting control (U+061C, U+200E/F, U+202A–E, U+2066–9):
/// invisible characters that reorder the text around them ("gen\u{202e}eral").
pub fn is_bidi_control(c: char) -> bool {
    CodePointSetData::new::<BidiControl>().contains(c)
}

/// Whether `c` is Unicode whitespace.
pub fn is_whitespace(c: char) -> bool {
    CodePointSetData::new::<WhiteSpace>().contains(c)
}

/// Whether `c` is drawn as nothing: a default-ignorable code point (zero-width spaces and
/// joiners, variation selectors, fillers, tags, bidi controls …) or the blank Braille pattern
/// U+2800, which renders as an empty cell but is not ignorable.
pub fn is_invisible(c: char) -> bool {
    c == '\u{2800}' || CodePointSetData::new::<DefaultIgnorableCodePoint>().contains(c)
}

/// Whether `c` is an invisible character with a job in visible text: the zero-width joiner and
/// non-joiner (emoji sequences, Indic and Arabic scripts), variation selectors (emoji vs text
/// presentation, Mongolian), and tag characters (subdivision flags such as England's).
pub fn is_joining_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{200C}'
            | '\u{200D}'
            | '\u{180B}'..='\u{180D}'
            | '\u{180F}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{E0020}'..='\u{E007F}'
            | '\u{E0100}'..='\u{E01EF}'
    )
}

/// Whether `s` shows nothing: every character is whitespace, a control character or
/// invisible. An empty string is blank.
pub fn is_blank(s: &str) -> bool {
    s.chars()
        .all(|c| c.is_control() || is_whitespace(c) || is_invisible(c))
}

/// The key under which look-alike strings are equal: case-folded, then reduced to its UTS #39
/// confusable skeleton (which drops default-ignorable characters and maps each character to
/// its prototype, e.g. U+217C SMALL ROMAN NUMERAL FIFTY to "l"), then case-folded again (a
/// prototype may be a capital). So "General", "GENERAL", "Genera\u{217c}" and "Gеneral" (with
/// a Cyrillic е) share one key. Keys are for comparing, never for showing.
pub fn lookalike_key(s: &str) -> String {
    let folded = s.to_lowercase();
    unicode_security::skeleton(&folded)
        .collect::<String>()
        .to_lowercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nfc_composes() {
        assert_eq!(nfc("Cafe\u{301}"), "Caf\u{e9}");
        assert!(matches!(nfc("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn character_classes() {
        for c in ['\u{202e}', '\u{200e}', '\u{2066}', '\u{61c}'] {
            assert!(is_bidi_control(c), "{c:?}");
            assert!(is_invisible(c), "{c:?}");
        }
        for c in [
            '\u{200b}', '\u{2060}', '\u{feff}', '\u{ad}', '\u{3164}', '\u{2800}',
        ] {
            assert!(is_invisible(c), "{c:?}");
            assert!(!is_joining_invisible(c), "{c:?}");
        }
        for c in ['\u{200d}', '\u{fe0f}', '\u{e0067}'] {
            assert!(is_invisible(c) && is_joining_invisible(c), "{c:?}");
        }
        assert!(!is_invisible('a') && !is_bidi_control('a'));
    }

    #[test]
    fn blank_text() {
        for blank in [
            "",
            " ",
            "\u{200b}",
            " \u{200b}\u{2060}\u{feff} ",
            "\u{3000}\n\t",
            "\u{2800}",
        ] {
            assert!(is_blank(blank), "{blank:?}");
        }
        for visible in ["a", " . ", "\u{200b}x", "😀", "\u{2764}\u{fe0f}"] {
            assert!(!is_blank(visible), "{visible:?}");
        }
    }

    #[test]
    fn lookalikes_share_a_key() {
        let general = lookalike_key("General");
        for alike in [
            "general",
            "GENERAL",
            "Genera\u{217c}",
            "general\u{200b}",
            "G\u{435}neral",
            "Genera1",
        ] {
            assert_eq!(lookalike_key(alike), general, "{alike:?}");
        }
        assert_eq!(lookalike_key("Caf\u{e9}"), lookalike_key("Cafe\u{301}"));
        assert_ne!(lookalike_key("Café"), lookalike_key("Cafe"));
        assert_ne!(lookalike_key("general"), lookalike_key("generals"));
        assert_ne!(lookalike_key("Общий"), lookalike_key("Общая"));
    }
}
