//! The server's TLS identity, one for HTTPS and WebTransport: a PEM pair from disk
//! ([`pem_pair`]), or a short-lived self-signed ECDSA P-256 certificate it makes and rotates
//! itself; plus the certificate's SHA-256 that browsers pin (`serverCertificateHashes`) and
//! `/api/cert` publishes.
//!
//! [`Certificates`] holds the certificate being served and is itself the certificate resolver
//! of both TLS servers (the HTTPS listener's and the QUIC endpoint's): each new handshake asks
//! it for the current `CertifiedKey`. Replacing the certificate (a reload from the files, see
//! [`reload`], or a self-signed rotation) is one pointer swap: handshakes from then on present
//! the new one, connections already up keep the keys they agreed and are not touched, and no
//! endpoint is reconfigured. A pair that fails its checks replaces nothing.

pub mod pem_pair;
pub mod reload;

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use wtransport::Identity;
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use wtransport::tls::rustls::server::{ClientHello, ResolvesServerCert};
use wtransport::tls::rustls::sign::CertifiedKey;
use wtransport::tls::self_signed::time::{self, OffsetDateTime};

use crate::config::TlsFiles;
pub use pem_pair::PemError;

/// Total validity of a self-signed certificate. Browsers accept pinned certificates valid for
/// at most 14 days.
const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(13 * 24 * 3600);
/// Backdating, so a client whose clock is a little behind still accepts a new certificate.
const BACKDATE: Duration = Duration::from_secs(3600);
/// A self-signed certificate is replaced when it has less than this left.
const ROTATE_WITH_REMAINING: Duration = Duration::from_secs(6 * 24 * 3600);

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot use the certificate: {0}")]
    Pem(#[from] PemError),
    #[error("cannot make a self-signed certificate: {0}")]
    SelfSigned(String),
}

/// What clients learn about the current certificate.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CertInfo {
    pub sha256_hex: String,
    /// Expiry of a self-signed certificate (unknown, `None`, for one loaded from files). The
    /// browser client pins the hash only when this is set: a pinned certificate must be
    /// valid for at most 14 days, a CA-issued one is verified as any other.
    pub not_after_ms: Option<u64>,
}

/// What a reload did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reloaded {
    /// A different certificate is served now.
    Changed { sha256_hex: String },
    /// The files hold the certificate already served.
    Unchanged,
    /// No files are configured (the certificate is self-signed): nothing to reload.
    SelfSigned,
}

/// The certificate being served, and how to renew it.
pub struct Certificates {
    source: Source,
    current: RwLock<Arc<Served>>,
}

enum Source {
    Files(TlsFiles),
    /// Self-signed for these names (host names and IPs).
    SelfSigned(Vec<String>),
}

struct Served {
    key: Arc<CertifiedKey>,
    info: CertInfo,
}

impl Certificates {
    /// Load the PEM pair, or make a self-signed certificate for `names` (host names and IPs).
    pub fn load(files: Option<&TlsFiles>, names: Vec<String>) -> Result<Self, TlsError> {
        let (source, served) = match files {
            Some(f) => (Source::Files(f.clone()), from_files(f, SystemTime::now())?),
            None => {
                let served = self_signed(&names, SystemTime::now())?;
                (Source::SelfSigned(names), served)
            }
        };
        Ok(Certificates {
            source,
            current: RwLock::new(Arc::new(served)),
        })
    }

    pub fn info(&self) -> CertInfo {
        self.served().info.clone()
    }

    /// The configured files, when the certificate comes from them.
    pub fn files(&self) -> Option<&TlsFiles> {
        match &self.source {
            Source::Files(files) => Some(files),
            Source::SelfSigned(_) => None,
        }
    }

    /// Read the files again and serve what they hold from the next handshake on. On an error
    /// the certificate served stays as it was.
    pub fn reload(&self) -> Result<Reloaded, TlsError> {
        let Source::Files(files) = &self.source else {
            return Ok(Reloaded::SelfSigned);
        };
        let fresh = from_files(files, SystemTime::now())?;
        if fresh.info == self.served().info {
            return Ok(Reloaded::Unchanged);
        }
        let sha256_hex = fresh.info.sha256_hex.clone();
        self.replace(fresh);
        Ok(Reloaded::Changed { sha256_hex })
    }

    /// Replace a self-signed certificate that is close to expiry. True when it rotated.
    pub fn rotate_if_due(&self, now: SystemTime) -> Result<bool, TlsError> {
        let Source::SelfSigned(names) = &self.source else {
            return Ok(false);
        };
        let due = self.served().info.not_after_ms.is_some_and(|t| {
            t.saturating_sub(unix_ms(now)) < ROTATE_WITH_REMAINING.as_millis() as u64
        });
        if !due {
            return Ok(false);
        }
        self.replace(self_signed(names, now)?);
        Ok(true)
    }

    fn served(&self) -> Arc<Served> {
        match self.current.read() {
            Ok(guard) => Arc::clone(&guard),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    fn replace(&self, fresh: Served) {
        let fresh = Arc::new(fresh);
        match self.current.write() {
            Ok(mut guard) => *guard = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.served().key))
    }
}

impl fmt::Debug for Certificates {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificates")
            .field("sha256_hex", &self.served().info.sha256_hex)
            .finish_non_exhaustive()
    }
}

fn from_files(files: &TlsFiles, now: SystemTime) -> Result<Served, TlsError> {
    let pair = pem_pair::load(&files.cert, &files.key, now)?;
    Ok(Served {
        key: pair.key,
        info: CertInfo {
            sha256_hex: hex(&pair.sha256),
            not_after_ms: None,
        },
    })
}

fn self_signed(names: &[String], now: SystemTime) -> Result<Served, TlsError> {
    let not_before = OffsetDateTime::from(now) - time::Duration::seconds(BACKDATE.as_secs() as i64);
    let not_after = not_before + time::Duration::seconds(SELF_SIGNED_VALIDITY.as_secs() as i64);
    let identity = Identity::self_signed_builder()
        .subject_alt_names(names)
        .not_before(not_before)
        .not_after(not_after)
        .build()
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let chain: Vec<CertificateDer<'static>> = identity
        .certificate_chain()
        .as_slice()
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let sha256_hex = identity
        .certificate_chain()
        .as_slice()
        .first()
        .map(|c| hex(c.hash().as_ref()))
        .unwrap_or_default();
    // wtransport's builder (rcgen) writes the key as PKCS#8.
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.private_key().secret_der().to_vec(),
    ));
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(der)
        .map_err(|e| TlsError::SelfSigned(e.to_string()))?;
    let not_after_ms = (not_after.unix_timestamp_nanos() / 1_000_000).max(0) as u64;
    Ok(Served {
        key: Arc::new(CertifiedKey::new(chain, signing)),
        info: CertInfo {
            sha256_hex,
            not_after_ms: Some(not_after_ms),
        },
    })
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

    /// The DER of the certificate the resolver hands to a handshake now.
    fn presented(certs: &Certificates) -> Vec<u8> {
        certs.served().key.cert[0].to_vec()
    }

    #[test]
    fn self_signed_is_short_lived_and_pinned_by_hash() {
        let certs = Certificates::load(None, names()).unwrap();
        let info = certs.info();
        assert_eq!(info.sha256_hex.len(), 64);
        let left = info.not_after_ms.unwrap() - unix_ms(SystemTime::now());
        assert!(
            left <= 14 * 24 * 3600 * 1000,
            "browsers refuse more than 14 days"
        );
        assert!(left > 12 * 24 * 3600 * 1000);
        use sha2::Digest;
        let digest: [u8; 32] = sha2::Sha256::digest(presented(&certs)).into();
        assert_eq!(
            hex(&digest),
            info.sha256_hex,
            "the hash is of what is served"
        );
    }

    #[test]
    fn rotates_only_when_close_to_expiry() {
        let certs = Certificates::load(None, names()).unwrap();
        let before = certs.info();
        let served_before = presented(&certs);
        assert!(!certs.rotate_if_due(SystemTime::now()).unwrap());
        let later = SystemTime::now() + Duration::from_secs(8 * 24 * 3600);
        assert!(certs.rotate_if_due(later).unwrap());
        let after = certs.info();
        assert_ne!(before.sha256_hex, after.sha256_hex);
        assert!(after.not_after_ms > before.not_after_ms);
        assert_ne!(
            presented(&certs),
            served_before,
            "handshakes get the new one"
        );
        assert_eq!(certs.reload().unwrap(), Reloaded::SelfSigned);
    }

    #[test]
    fn missing_pem_files_are_a_clear_error() {
        let files = TlsFiles {
            cert: "/nonexistent/cert.pem".into(),
            key: "/nonexistent/key.pem".into(),
        };
        let err = Certificates::load(Some(&files), names()).err().unwrap();
        assert!(err.to_string().contains("/nonexistent/cert.pem"), "{err}");
    }
}
