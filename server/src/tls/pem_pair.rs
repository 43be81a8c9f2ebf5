//! A certificate chain and its private key read from PEM files, checked, and made into the
//! `CertifiedKey` that both TLS servers (HTTPS and WebTransport) present.
//!
//! Each file is read once (at most [`MAX_PEM_BYTES`]) and split into its PEM sections with
//! rustls-pki-types' parser, which knows every key form: `PRIVATE KEY` (PKCS#8), `RSA PRIVATE
//! KEY` (PKCS#1) and `EC PRIVATE KEY` (SEC1). The key is loaded by ring's key provider, the
//! one both servers sign with, and must match the leaf certificate's public key; the leaf must
//! be valid now. Every refusal is a [`PemError`] that names the file and the problem, so an
//! operator who swapped the two paths, gave a DER file or the wrong key reads what to fix.

use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use sha2::{Digest, Sha256};
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::pem::{PemObject, SectionKind};
use wtransport::tls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};
use wtransport::tls::rustls::sign::CertifiedKey;

/// The most read from one PEM file: a long chain with a key is a few tens of KiB.
pub const MAX_PEM_BYTES: u64 = 1024 * 1024;

/// Why a PEM pair cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum PemError {
    #[error("{}: cannot read: {source}", path.display())]
    Read { path: PathBuf, source: io::Error },
    #[error("{}: larger than {MAX_PEM_BYTES} bytes, not a PEM file", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: not a PEM file ({reason})", path.display())]
    NotPem { path: PathBuf, reason: String },
    #[error("{}: no certificate in it{hint}", path.display())]
    NoCertificate { path: PathBuf, hint: &'static str },
    #[error(
        "{}: no private key in it (PKCS#8 `PRIVATE KEY`, PKCS#1 `RSA PRIVATE KEY` or SEC1 `EC PRIVATE KEY`){hint}",
        path.display()
    )]
    NoKey { path: PathBuf, hint: &'static str },
    #[error("{}: the certificate cannot be read: {reason}", path.display())]
    BadCertificate { path: PathBuf, reason: String },
    #[error("{}: the private key cannot be used: {reason}", path.display())]
    BadKey { path: PathBuf, reason: String },
    #[error("{}: the private key does not match the certificate in {}", key.display(), cert.display())]
    Mismatch { cert: PathBuf, key: PathBuf },
    #[error("{}: the certificate expired at {at}", path.display())]
    Expired { path: PathBuf, at: String },
    #[error("{}: the certificate is not valid before {at}", path.display())]
    NotYetValid { path: PathBuf, at: String },
}

/// A checked pair, ready to serve.
#[derive(Debug)]
pub struct PemPair {
    pub key: Arc<CertifiedKey>,
    /// SHA-256 of the leaf certificate's DER.
    pub sha256: [u8; 32],
    pub not_after: SystemTime,
}

/// Read, parse and check the pair at `cert` and `key`, as of `now`.
pub fn load(cert: &Path, key: &Path, now: SystemTime) -> Result<PemPair, PemError> {
    let cert_sections = sections(cert)?;
    let chain: Vec<CertificateDer<'static>> = cert_sections
        .iter()
        .filter(|(kind, _)| *kind == SectionKind::Certificate)
        .map(|(_, der)| CertificateDer::from(der.clone()))
        .collect();
    let Some(leaf) = chain.first() else {
        let hint = if cert_sections.iter().any(|(kind, _)| is_key(*kind)) {
            " (it holds a private key: are the certificate and key paths swapped?)"
        } else {
            ""
        };
        return Err(PemError::NoCertificate {
            path: cert.to_owned(),
            hint,
        });
    };
    let (not_before, not_after) = validity(leaf).map_err(|reason| PemError::BadCertificate {
        path: cert.to_owned(),
        reason,
    })?;
    if now < not_before {
        return Err(PemError::NotYetValid {
            path: cert.to_owned(),
            at: humantime::format_rfc3339_seconds(not_before).to_string(),
        });
    }
    if now > not_after {
        return Err(PemError::Expired {
            path: cert.to_owned(),
            at: humantime::format_rfc3339_seconds(not_after).to_string(),
        });
    }
    let sha256: [u8; 32] = Sha256::digest(leaf.as_ref()).into();

    let key_sections = sections(key)?;
    let Some(private) = key_sections.into_iter().find_map(|(kind, der)| match kind {
        SectionKind::PrivateKey => Some(PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der))),
        SectionKind::RsaPrivateKey => Some(PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der))),
        SectionKind::EcPrivateKey => Some(PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der))),
        _ => None,
    }) else {
        let hint = if cert_sections.iter().any(|(kind, _)| is_key(*kind)) {
            " (the certificate file holds one: are the paths swapped?)"
        } else {
            ""
        };
        return Err(PemError::NoKey {
            path: key.to_owned(),
            hint,
        });
    };
    let signing = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private)
        .map_err(|e| PemError::BadKey {
            path: key.to_owned(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing);
    match certified.keys_match() {
        Ok(()) => {}
        // ring tells every key's public half; a key type without one is left to the peer.
        Err(rustls::Error::InconsistentKeys(rustls::InconsistentKeys::Unknown)) => {}
        Err(rustls::Error::InconsistentKeys(_)) => {
            return Err(PemError::Mismatch {
                cert: cert.to_owned(),
                key: key.to_owned(),
            });
        }
        Err(e) => {
            return Err(PemError::BadCertificate {
                path: cert.to_owned(),
                reason: e.to_string(),
            });
        }
    }
    Ok(PemPair {
        key: Arc::new(certified),
        sha256,
        not_after,
    })
}

fn is_key(kind: SectionKind) -> bool {
    matches!(
        kind,
        SectionKind::PrivateKey | SectionKind::RsaPrivateKey | SectionKind::EcPrivateKey
    )
}

/// The file's PEM sections (of kinds rustls-pki-types knows; others are skipped), in order.
fn sections(path: &Path) -> Result<Vec<(SectionKind, Vec<u8>)>, PemError> {
    let read_error = |source| PemError::Read {
        path: path.to_owned(),
        source,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(read_error)?
        .take(MAX_PEM_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(read_error)?;
    if bytes.len() as u64 > MAX_PEM_BYTES {
        return Err(PemError::TooLarge {
            path: path.to_owned(),
        });
    }
    let sections = <(SectionKind, Vec<u8>)>::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| PemError::NotPem {
            path: path.to_owned(),
            reason: e.to_string(),
        })?;
    if sections.is_empty() {
        let reason = if bytes.is_empty() {
            "the file is empty"
        } else if bytes.windows(11).any(|w| w == b"-----BEGIN ") {
            "no section of a known kind"
        } else {
            "no `-----BEGIN` line; a DER file needs converting to PEM"
        };
        return Err(PemError::NotPem {
            path: path.to_owned(),
            reason: reason.to_owned(),
        });
    }
    Ok(sections)
}

/// The certificate's validity period.
fn validity(der: &CertificateDer<'_>) -> Result<(SystemTime, SystemTime), String> {
    let (_, parsed) =
        x509_parser::parse_x509_certificate(der.as_ref()).map_err(|e| e.to_string())?;
    let validity = parsed.validity();
    Ok((
        system_time(validity.not_before.timestamp()),
        system_time(validity.not_after.timestamp()),
    ))
}

/// A certificate's time (at most year 9999) as a `SystemTime`; before 1970 counts as 1970.
fn system_time(unix_seconds: i64) -> SystemTime {
    let seconds = u64::try_from(unix_seconds).unwrap_or(0);
    UNIX_EPOCH
        .checked_add(Duration::from_secs(seconds))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;
    use rcgen::{CertificateParams, KeyPair, date_time_ymd};

    /// A 2048-bit RSA key (PKCS#8), made once with `openssl genpkey`: ring cannot make RSA keys.
    const RSA_PKCS8: &str = include_str!("../../tests/fixtures/rsa-2048.pkcs8.pem");

    fn pem(label: &str, der: &[u8]) -> String {
        let body = base64::engine::general_purpose::STANDARD.encode(der);
        let lines: Vec<&str> = body
            .as_bytes()
            .chunks(64)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect();
        format!(
            "-----BEGIN {label}-----\n{}\n-----END {label}-----\n",
            lines.join("\n")
        )
    }

    /// The key inside a PKCS#8 `PrivateKeyInfo`: its OCTET STRING field holds the PKCS#1
    /// (RSA) or SEC1 (EC) form (a short DER walk: tag, length, contents).
    fn inner_key(pkcs8: &[u8]) -> Vec<u8> {
        fn field(der: &[u8]) -> (u8, &[u8], &[u8]) {
            let (tag, len_byte) = (der[0], der[1] as usize);
            let (len, start) = if len_byte < 0x80 {
                (len_byte, 2)
            } else {
                let n = len_byte & 0x7f;
                let len = der[2..2 + n].iter().fold(0, |l, b| l << 8 | *b as usize);
                (len, 2 + n)
            };
            (tag, &der[start..start + len], &der[start + len..])
        }
        let (_, mut inner, _) = field(pkcs8);
        loop {
            let (tag, contents, rest) = field(inner);
            if tag == 0x04 {
                return contents.to_vec();
            }
            inner = rest;
        }
    }

    struct Files {
        dir: tempfile::TempDir,
        cert_pem: String,
        cert_der: Vec<u8>,
        key: KeyPair,
    }

    impl Files {
        fn path(&self, name: &str) -> PathBuf {
            self.dir.path().join(name)
        }

        fn write(&self, name: &str, contents: impl AsRef<[u8]>) -> PathBuf {
            let path = self.path(name);
            std::fs::write(&path, contents).unwrap();
            path
        }

        fn cert(&self) -> PathBuf {
            self.write("cert.pem", &self.cert_pem)
        }

        fn load(&self, key_pem: &str) -> Result<PemPair, PemError> {
            let key = self.write("key.pem", key_pem);
            load(&self.cert(), &key, SystemTime::now())
        }
    }

    fn files_with(key: KeyPair, params: CertificateParams) -> Files {
        let cert = params.self_signed(&key).unwrap();
        Files {
            dir: tempfile::tempdir().unwrap(),
            cert_pem: cert.pem(),
            cert_der: cert.der().to_vec(),
            key,
        }
    }

    fn files(key: KeyPair) -> Files {
        files_with(
            key,
            CertificateParams::new(vec!["localhost".into()]).unwrap(),
        )
    }

    fn loads(files: &Files, key_pem: &str) {
        let pair = files
            .load(key_pem)
            .unwrap_or_else(|e| panic!("{e}\n{key_pem}"));
        assert_eq!(pair.key.cert[0].as_ref(), &files.cert_der[..]);
        let digest: [u8; 32] = Sha256::digest(&files.cert_der).into();
        assert_eq!(pair.sha256, digest);
        assert!(pair.not_after > SystemTime::now());
    }

    #[test]
    fn an_ec_key_loads_as_pkcs8_and_as_sec1() {
        let f = files(KeyPair::generate().unwrap());
        let pkcs8 = f.key.serialize_pem();
        assert!(pkcs8.starts_with("-----BEGIN PRIVATE KEY-----"));
        loads(&f, &pkcs8);
        let sec1 = pem("EC PRIVATE KEY", &inner_key(&f.key.serialize_der()));
        loads(&f, &sec1);
        // OpenSSL's `ecparam -genkey` writes the curve's parameters first.
        loads(
            &f,
            &format!(
                "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{sec1}"
            ),
        );
    }

    #[test]
    fn an_rsa_key_loads_as_pkcs8_and_as_pkcs1() {
        let f = files(KeyPair::from_pem(RSA_PKCS8).unwrap());
        loads(&f, RSA_PKCS8);
        let der = PrivatePkcs8KeyDer::from_pem_slice(RSA_PKCS8.as_bytes()).unwrap();
        let pkcs1 = pem("RSA PRIVATE KEY", &inner_key(der.secret_pkcs8_der()));
        loads(&f, &pkcs1);
    }

    #[test]
    fn a_chain_keeps_its_order_and_a_combined_file_serves_as_both() {
        let f = files(KeyPair::generate().unwrap());
        let other = files(KeyPair::generate().unwrap());
        let chain = format!("{}{}", f.cert_pem, other.cert_pem);
        let both = f.write("both.pem", format!("{chain}{}", f.key.serialize_pem()));
        let pair = load(&both, &both, SystemTime::now()).unwrap();
        assert_eq!(pair.key.cert.len(), 2);
        assert_eq!(pair.key.cert[0].as_ref(), &f.cert_der[..]);
        assert_eq!(pair.key.cert[1].as_ref(), &other.cert_der[..]);
    }

    /// Every refusal names the file at fault and says what is wrong with it.
    #[test]
    fn each_bad_file_is_named_with_its_problem() {
        let f = files(KeyPair::generate().unwrap());
        let key_pem = f.key.serialize_pem();
        let cert = f.cert();
        let key = f.write("key.pem", &key_pem);
        let now = SystemTime::now();
        let expect = |result: Result<PemPair, PemError>, file: &Path, says: &str| {
            let message = result.expect_err("refused").to_string();
            assert!(
                message.starts_with(&file.display().to_string()),
                "{message}"
            );
            assert!(message.contains(says), "{message} should say {says:?}");
        };

        let missing = f.path("missing.pem");
        expect(load(&missing, &key, now), &missing, "cannot read");
        expect(load(&cert, &missing, now), &missing, "cannot read");
        let empty = f.write("empty.pem", "");
        expect(load(&empty, &key, now), &empty, "empty");
        let der = f.write("cert.der", &f.cert_der);
        expect(load(&der, &key, now), &der, "DER file needs converting");
        let broken = f.write("broken.pem", "-----BEGIN CERTIFICATE-----\nAAAA\n");
        expect(load(&broken, &key, now), &broken, "not a PEM file");
        expect(load(&key, &cert, now), &key, "paths swapped");
        expect(load(&cert, &cert, now), &cert, "no private key");
        let garbage = f.write("garbage.pem", pem("PRIVATE KEY", b"not a key at all"));
        expect(
            load(&cert, &garbage, now),
            &garbage,
            "private key cannot be used",
        );
        let not_x509 = f.write("not-x509.pem", pem("CERTIFICATE", b"not a certificate"));
        expect(
            load(&not_x509, &key, now),
            &not_x509,
            "certificate cannot be read",
        );
        let other = f.write("other.pem", KeyPair::generate().unwrap().serialize_pem());
        expect(
            load(&cert, &other, now),
            &other,
            "does not match the certificate in",
        );
        let big = f.write("big.pem", vec![b'a'; MAX_PEM_BYTES as usize + 1]);
        expect(load(&big, &key, now), &big, "larger than");

        let mut old = CertificateParams::new(vec!["localhost".into()]).unwrap();
        old.not_before = date_time_ymd(2020, 1, 1);
        old.not_after = date_time_ymd(2021, 1, 1);
        let expired = files_with(KeyPair::generate().unwrap(), old);
        expect(
            expired.load(&expired.key.serialize_pem()),
            &expired.path("cert.pem"),
            "expired at 2021-01-01",
        );
        let mut future = CertificateParams::new(vec!["localhost".into()]).unwrap();
        future.not_before = date_time_ymd(4000, 1, 1);
        future.not_after = date_time_ymd(4001, 1, 1);
        let early = files_with(KeyPair::generate().unwrap(), future);
        expect(
            early.load(&early.key.serialize_pem()),
            &early.path("cert.pem"),
            "not valid before",
        );
    }
}
