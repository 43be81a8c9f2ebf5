//! The server's TLS identity for WebTransport: a PEM pair from disk, or a short-lived
//! self-signed ECDSA P-256 certificate it makes and rotates itself, plus the certificate's
//! SHA-256 that browsers pin (`serverCertificateHashes`) and `/api/cert` publishes.

use std::sync::RwLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wtransport::Identity;
use wtransport::tls::self_signed::time::{self, OffsetDateTime};

use crate::config::TlsFiles;

/// Total validity of a self-signed certificate. Browsers accept pinned certificates valid for
/// at most 14 days.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// Backdating, so a client whose clock is a little behind still accepts a new certificate.
const BACKDATE: Duration = Duration::from_secs(3600);
/// A self-signed certificate is replaced when it has less than this left.
const ROTATE_WITH_REMAINING: Duration = Duration::from_secs(6 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot load certificate/key from {cert} and {key}: {reason}")]
    Load {
        cert: String,
        key: String,
        reason: String,
    },
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// What clients learn about the current certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub sha256_hex: String,
    /// Expiry of a self-signed certificate (unknown, `None`, for one loaded from files).
    pub not_after_ms: Option<u64>,
}

/// The current identity, and how to renew it.
pub struct Certificates {
    self_signed_names: Option<Vec<String>>,
    current: RwLock<Current>,
}

struct Current {
    identity: Identity,
    info: CertInfo,
}

impl Certificates {
    /// Load the PEM pair, or make a self-signed certificate for `names` (host names and IPs).
    pub async fn load(files: Option<&TlsFiles>, names: Vec<String>) -> Result<Self, TlsError> {
        let (current, self_signed_names) = match files {
            Some(f) => {
                let identity = Identity::load_pemfiles(&f.cert, &f.key)
                    .await
                    .map_err(|e| TlsError::Load {
                        cert: f.cert.display().to_string(),
                        key: f.key.display().to_string(),
                        reason: e.to_string(),
                    })?;
                (current_of(identity, None), None)
            }
            None => (self_signed(&names, SystemTime::now())?, Some(names)),
        };
        Ok(Certificates {
            self_signed_names,
            current: RwLock::new(current),
        })
    }

    /// A copy of the identity to build a QUIC server config with.
    pub fn identity(&self) -> Identity {
        self.read(|c| c.identity.clone_identity())
    }

    pub fn info(&self) -> CertInfo {
        self.read(|c| c.info.clone())
    }

    /// Replace a self-signed certificate that is close to expiry. Returns the new identity
    /// when it rotated.
    pub fn rotate_if_due(&self, now: SystemTime) -> Result<Option<Identity>, TlsError> {
        let Some(names) = &self.self_signed_names else {
            return Ok(None);
        };
        let due = self.read(|c| {
            c.info.not_after_ms.is_some_and(|t| {
                t.saturating_sub(unix_ms(now)) < ROTATE_WITH_REMAINING.as_millis() as u64
            })
        });
        if !due {
            return Ok(None);
        }
        let fresh = self_signed(names, now)?;
        let identity = fresh.identity.clone_identity();
        match self.current.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        Ok(Some(identity))
    }

    fn read<T>(&self, f: impl FnOnce(&Current) -> T) -> T {
        match self.current.read() {
            Ok(guard) => f(&guard),
            Err(poisoned) => f(&poisoned.into_inner()),
        }
    }
}

fn self_signed(names: &[String], now: SystemTime) -> Result<Current, TlsError> {
    let not_before = OffsetDateTime::from(now) - time::Duration::seconds(BACKDATE.as_secs() as i64);
    let not_after = not_before + time::Duration::seconds(SELF_SIGNED_VALIDITY.as_secs() as i64);
    let identity = Identity::self_signed_builder()
        .subject_alt_names(names)
        .not_before(not_before)
        .not_after(not_after)
        .build()
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let not_after_ms = (not_after.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    Ok(current_of(identity, Some(not_after_ms)))
}

fn current_of(identity: Identity, not_after_ms: Option<u64>) -> Current {
    let sha256_hex = identity
        .certificate_chain()
        .as_slice()
        .first()
        .map(|c| hex(c.hash().as_ref()))
        .unwrap_or_default();
    Current {
        identity,
        info: CertInfo {
            sha256_hex,
            not_after_ms,
        },
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Milliseconds since the Unix epoch.
pub fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
    }

    #[tokio::test]
    async fn self_signed_is_short_lived_and_pinned_by_hash() {
        let certs = Certificates::load(None, names()).await.unwrap();
        let info = certs.info();
        assert_eq!(info.sha256_hex.len(), 64);
        let left = info.not_after_ms.unwrap() - unix_ms(SystemTime::now());
        assert!(
            left <= 14 * 24 * 3600 * 1000,
            "browsers refuse more than 14 days"
        );
        assert!(left > 12 * 24 * 3600 * 1000);
    }

    #[tokio::test]
    async fn rotates_only_when_close_to_expiry() {
        let certs = Certificates::load(None, names()).await.unwrap();
        let before = certs.info();
        assert!(certs.rotate_if_due(SystemTime::now()).unwrap().is_none());
        let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
        assert!(certs.rotate_if_due(later).unwrap().is_some());
        let after = certs.info();
        assert_ne!(before.sha256_hex, after.sha256_hex);
        assert!(after.not_after_ms > before.not_after_ms);
    }

    #[tokio::test]
    async fn missing_pem_files_are_a_clear_error() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = Certificates::load(Some(&files), names())
            .await
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/cert.pem"));
    }
}
