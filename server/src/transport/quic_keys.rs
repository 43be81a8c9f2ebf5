//! The QUIC endpoint's keys, kept in the data dir so that they outlive the process. A QUIC
//! endpoint answers a packet for a connection it does not know with a stateless reset, whose
//! token comes from the reset key and the connection id, and only for connection ids its id
//! generator recognises as its own. With quinn's defaults (both keys random per process) a
//! server restarted after a crash drops its predecessor's packets silently, and WebTransport
//! clients wait out the 30 s idle timeout before they reconnect; with both keys kept, the
//! restarted server resets them at their next packet and they reconnect at once. One 32-byte
//! secret in `quic-keys.secret` (owner-only, made on first use) yields both: the HMAC-SHA256
//! reset key, and the id generator's key, taken from an HMAC of a fixed label.

use std::io::{ErrorKind, Read, Write};
use std::path::Path;
use std::sync::Arc;

use quinn_proto::HashedConnectionIdGenerator;
use rand::RngCore;
use wtransport::quinn::EndpointConfig;
use wtransport::quinn::crypto::HmacKey;

/// The secret's file name in the data dir.
const FILE: &str = "quic-keys.secret";
const LEN: usize = 32;

/// The keys a restarted endpoint needs to reset its predecessor's connections.
pub struct QuicKeys {
    reset: Arc<ring::hmac::Key>,
    cid: u64,
}

impl QuicKeys {
    /// The data dir's keys, made (and saved) if it has none yet.
    pub fn load_or_create(data_dir: &Path) -> std::io::Result<QuicKeys> {
        let path = data_dir.join(FILE);
        let mut secret = [0u8; LEN];
        match std::fs::File::open(&path) {
            Ok(mut file) => file.read_exact(&mut secret)?,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                rand::rng().fill_bytes(&mut secret);
                let mut options = std::fs::OpenOptions::new();
                options.write(true).create_new(true);
                #[cfg(unix)]
                std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
                let mut file = options.open(&path)?;
                file.write_all(&secret)?;
                file.sync_all()?;
            }
            Err(e) => return Err(e),
        }
        let reset = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, &secret);
        let tag = ring::hmac::sign(&reset, b"quibble connection ids");
        let mut cid = [0u8; 8];
        cid.copy_from_slice(&tag.as_ref()[..8]);
        Ok(QuicKeys {
            reset: Arc::new(reset),
            cid: u64::from_le_bytes(cid),
        })
    }

    /// Use these keys for an endpoint.
    pub fn apply(&self, config: &mut EndpointConfig) {
        let cid = self.cid;
        config
            .reset_key(self.reset.clone() as Arc<dyn HmacKey>)
            .cid_generator(move || Box::new(HashedConnectionIdGenerator::from_key(cid)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fingerprint(keys: &QuicKeys) -> (Vec<u8>, u64) {
        let mut out = vec![0u8; keys.reset.signature_len()];
        keys.reset.sign(b"connection id", &mut out);
        (out, keys.cid)
    }

    #[test]
    fn the_keys_survive_a_restart_and_differ_between_data_dirs() {
        let dir = tempfile::tempdir().unwrap();
        let first = fingerprint(&QuicKeys::load_or_create(dir.path()).unwrap());
        let again = fingerprint(&QuicKeys::load_or_create(dir.path()).unwrap());
        assert_eq!(again, first);
        let other = tempfile::tempdir().unwrap();
        let elsewhere = fingerprint(&QuicKeys::load_or_create(other.path()).unwrap());
        assert_ne!(elsewhere.0, first.0);
        assert_ne!(elsewhere.1, first.1);
    }
}
