//! The server certificate hash the page pins for WebTransport (`serverCertificateHashes`):
//! `/api/cert` publishes it as hex, the browser wants the 32 raw bytes.

/// The SHA-256 digest in `hex` (64 hex digits, either case), or `None` if it is not one.
pub fn parse_sha256_hex(hex: &str) -> Option<[u8; 32]> {
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_digest_and_refuses_anything_else() {
        let hex = "00ff10Ab".repeat(8);
        let bytes = parse_sha256_hex(&hex).unwrap();
        assert_eq!(&bytes[..4], &[0x00, 0xff, 0x10, 0xab]);
        assert_eq!(bytes[31], 0xab);
        assert_eq!(parse_sha256_hex(""), None);
        assert_eq!(parse_sha256_hex(&hex[..62]), None);
        assert_eq!(parse_sha256_hex(&"zz".repeat(32)), None);
        assert_eq!(parse_sha256_hex(&"é".repeat(32)), None);
    }
}
