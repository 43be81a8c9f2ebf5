//! The client's one TLS setup: which certificates it trusts ([`TlsRoots`]) and the rustls
//! configurations built from them, the same for all three ways the client talks to a server:
//! HTTPS for the REST API (reqwest), WSS for the WebSocket (tokio-rustls under
//! tokio-tungstenite) and WebTransport (wtransport, on quinn).
//!
//! The roots are the system's (rustls-native-certs: the operating system's store, read once
//! per process and shared) plus, optionally, the CA certificates of a PEM file
//! (`--ca-cert`). Every configuration uses rustls with the ring provider, as the server does.
//! A handshake that fails because the server's certificate is not trusted is recognised here
//! ([`certificate_failure`], [`quic_certificate_failure`]) so that callers can say so rather
//! than report a generic connection failure.
//!
//! A server given by an `http://` URL and no CA file keeps the old way for WebTransport:
//! pinning the self-signed certificate's hash from `/api/cert` (see `transport::wt`).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};

/// The largest CA file read (a system bundle of every public root is ~200 KB).
const MAX_CA_FILE: u64 = 4 * 1024 * 1024;
/// The ALPN protocol of WebTransport (HTTP/3).
const ALPN_H3: &[u8] = b"h3";
/// The ALPN protocol of the REST API and the WebSocket upgrade.
const ALPN_HTTP1: &[u8] = b"http/1.1";

/// The trusted certificates cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TlsError {
    /// A CA certificate file (`--ca-cert`) that cannot be used.
    #[error("cannot use the CA certificate file {}: {reason}", path.display())]
    CaCert { path: PathBuf, reason: String },
    /// rustls refused the configuration (not expected with the ring provider).
    #[error("cannot set up TLS: {0}")]
    Setup(String),
}

/// The certificates a client trusts, and the TLS configurations built from them. Cheap to
/// clone; clones share the roots (a shared WebTransport endpoint serves every session whose
/// roots are the same).
#[derive(Clone)]
pub struct TlsRoots {
    inner: Arc<Inner>,
}

struct Inner {
    /// The CA file added to the system's roots, if any.
    ca_file: Option<PathBuf>,
    /// For HTTPS and WSS: TLS 1.2 or 1.3, ALPN `http/1.1`.
    tcp: Arc<ClientConfig>,
    /// For WebTransport: TLS 1.3 (QUIC needs it), ALPN `h3`.
    quic: Arc<ClientConfig>,
}

impl std::fmt::Debug for TlsRoots {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsRoots")
            .field("ca_file", &self.inner.ca_file)
            .finish_non_exhaustive()
    }
}

impl TlsRoots {
    /// The system's roots alone (read once per process; every call shares them).
    pub fn system() -> Result<TlsRoots, TlsError> {
        static SYSTEM: OnceLock<Result<TlsRoots, TlsError>> = OnceLock::new();
        SYSTEM
            .get_or_init(|| TlsRoots::build(system_roots().clone(), None))
            .clone()
    }

    /// The system's roots plus every certificate in the PEM file at `path`. A file that is
    /// missing, unreadable, too large, not PEM or holds no usable certificate is an error that
    /// names the file.
    pub fn with_ca_cert(path: &Path) -> Result<TlsRoots, TlsError> {
        let mut roots = system_roots().clone();
        for certificate in read_pem_certificates(path)? {
            roots.add(certificate).map_err(|e| TlsError::CaCert {
                path: path.to_owned(),
                reason: format!("not a usable CA certificate: {e}"),
            })?;
        }
        TlsRoots::build(roots, Some(path.to_owned()))
    }

    /// [`TlsRoots::with_ca_cert`] for `Some(path)`, else [`TlsRoots::system`].
    pub fn from_option(path: Option<&Path>) -> Result<TlsRoots, TlsError> {
        path.map_or_else(TlsRoots::system, TlsRoots::with_ca_cert)
    }

    /// The CA file added to the system's roots, if any.
    pub fn ca_file(&self) -> Option<&Path> {
        self.inner.ca_file.as_deref()
    }

    /// What is trusted, for error messages: "the system's roots" (and the CA file).
    pub fn describe(&self) -> String {
        match &self.inner.ca_file {
            Some(path) => format!("the system's roots and {}", path.display()),
            None => "the system's roots".to_owned(),
        }
    }

    /// Whether `self` and `other` are the same roots (clones of one `TlsRoots`).
    pub(crate) fn same(&self, other: &TlsRoots) -> bool {
        Arc::ptr_eq(&self.inner, &other.inner)
    }

    /// The configuration for HTTPS and WSS.
    pub(crate) fn tcp(&self) -> Arc<ClientConfig> {
        self.inner.tcp.clone()
    }

    /// The configuration for WebTransport.
    pub(crate) fn quic(&self) -> &ClientConfig {
        &self.inner.quic
    }

    fn build(roots: RootCertStore, ca_file: Option<PathBuf>) -> Result<TlsRoots, TlsError> {
        let roots = Arc::new(roots);
        let config = |versions: &[&'static rustls::SupportedProtocolVersion], alpn: &[u8]| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let mut config = ClientConfig::builder_with_provider(provider)
                .with_protocol_versions(versions)
                .map_err(|e| TlsError::Setup(e.to_string()))?
                .with_root_certificates(roots.clone())
                .with_no_client_auth();
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok::<_, TlsError>(Arc::new(config))
        };
        Ok(TlsRoots {
            inner: Arc::new(Inner {
                tcp: config(rustls::DEFAULT_VERSIONS, ALPN_HTTP1)?,
                quic: config(&[&rustls::version::TLS13], ALPN_H3)?,
                ca_file,
            }),
        })
    }
}

/// The operating system's trusted roots, read on first use; those it cannot read or parse are
/// skipped (logged).
fn system_roots() -> &'static RootCertStore {
    static SYSTEM: OnceLock<RootCertStore> = OnceLock::new();
    SYSTEM.get_or_init(|| {
        let found = rustls_native_certs::load_native_certs();
        for error in &found.errors {
            tracing::debug!("cannot read some of the system's root certificates: {error}");
        }
        let mut roots = RootCertStore::empty();
        let (added, ignored) = roots.add_parsable_certificates(found.certs);
        tracing::debug!(added, ignored, "loaded the system's root certificates");
        roots
    })
}

/// Every `CERTIFICATE` block of the PEM file at `path` (at least one).
fn read_pem_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let error = |reason: String| TlsError::CaCert {
        path: path.to_owned(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| error(e.to_string()))?;
    let mut bytes = Vec::new();
    file.take(MAX_CA_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| error(e.to_string()))?;
    if bytes.len() as u64 > MAX_CA_FILE {
        return Err(error(format!(
            "larger than {} MiB",
            MAX_CA_FILE / 1024 / 1024
        )));
    }
    let certificates = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| error(format!("not a valid PEM file: {e}")))?;
    if certificates.is_empty() {
        return Err(error(
            "no PEM certificate in it (expected -----BEGIN CERTIFICATE-----)".to_owned(),
        ));
    }
    Ok(certificates)
}

/// The TLS name to verify the server `url` as: its IP address or DNS name.
pub(crate) fn server_name(url: &reqwest::Url) -> Option<ServerName<'static>> {
    let host = url.host_str()?;
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    match bare.parse::<std::net::IpAddr>() {
        Ok(ip) => Some(ServerName::from(ip)),
        Err(_) => ServerName::try_from(host.to_owned()).ok(),
    }
}

/// Why the server's certificate was refused, if `error` (or an error under it) is a rustls
/// certificate error: its text, with a plain hint for the common cases.
pub(crate) fn certificate_failure(error: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut next = Some(error);
    while let Some(error) = next {
        if let Some(tls) = error.downcast_ref::<rustls::Error>() {
            return is_certificate_error(tls).then(|| explain(&tls.to_string()));
        }
        next = under(error);
    }
    None
}

/// The error under `error`. An `io::Error`'s `source()` skips the error it wraps (it returns
/// that error's source), so look inside it instead; hyper wraps rustls's error in two.
fn under<'a>(
    error: &'a (dyn std::error::Error + 'static),
) -> Option<&'a (dyn std::error::Error + 'static)> {
    match error.downcast_ref::<std::io::Error>() {
        Some(io) => io
            .get_ref()
            .map(|inner| inner as &(dyn std::error::Error + 'static)),
        None => error.source(),
    }
}

fn is_certificate_error(error: &rustls::Error) -> bool {
    matches!(
        error,
        rustls::Error::InvalidCertificate(_) | rustls::Error::NoCertificatesPresented
    )
}

/// The same for a QUIC handshake, which hands back only the text of rustls's error (quinn
/// closes the connection with it as the reason): `Some` if the text is a certificate error.
pub(crate) fn quic_certificate_failure(text: &str) -> Option<String> {
    const PREFIX: &str = "invalid peer certificate";
    let start = text.find(PREFIX)?;
    let reason = &text[start..];
    // wtransport appends " (code: N)", the QUIC error code of the TLS alert.
    let reason = reason.rfind(" (code:").map_or(reason, |end| &reason[..end]);
    Some(explain(reason))
}

/// rustls's text for a refused certificate, with what it means where that is not plain.
fn explain(reason: &str) -> String {
    if reason.contains("UnknownIssuer") {
        format!("{reason} (no trusted CA issued it)")
    } else if reason.contains("BadSignature") {
        format!("{reason} (its signature does not match a trusted CA)")
    } else {
        reason.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate block that never ends.
    const CUT_PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIBVzCB/qADAgECAhQZT1E7rPGd4HOH\n";

    fn temp_file(name: &str, contents: &[u8]) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(name);
        std::fs::write(&path, contents).unwrap();
        (dir, path)
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let err = TlsRoots::with_ca_cert(Path::new("/nonexistent/ca.pem")).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("/nonexistent/ca.pem"), "{text}");
        assert!(text.contains("No such file"), "{text}");
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let (_dir, path) = temp_file("key.pem", b"just some text\n");
        let err = TlsRoots::with_ca_cert(&path).unwrap_err();
        assert!(
            matches!(&err, TlsError::CaCert { path: p, reason } if *p == path && reason.contains("no PEM certificate")),
            "{err}"
        );
        let (_dir, der) = temp_file("ca.der", &[0x30, 0x82, 0x01, 0x00, 1, 2, 3]);
        assert!(TlsRoots::with_ca_cert(&der).is_err());
    }

    #[test]
    fn a_broken_pem_block_is_refused() {
        let (_dir, path) = temp_file("broken.pem", CUT_PEM.as_bytes());
        let err = TlsRoots::with_ca_cert(&path).unwrap_err();
        assert!(err.to_string().contains("broken.pem"), "{err}");
    }

    #[test]
    fn the_system_roots_are_read_once_and_shared() {
        let system = TlsRoots::system().unwrap();
        assert!(system.same(&TlsRoots::system().unwrap()));
        assert_eq!(system.ca_file(), None);
        assert_eq!(system.describe(), "the system's roots");
        assert_eq!(system.quic().alpn_protocols, vec![b"h3".to_vec()]);
        assert_eq!(system.tcp().alpn_protocols, vec![b"http/1.1".to_vec()]);
    }

    #[test]
    fn quic_certificate_errors_are_recognised_by_their_text() {
        let reason =
            quic_certificate_failure("invalid peer certificate: UnknownIssuer (code: 304)")
                .unwrap();
        assert_eq!(
            reason,
            "invalid peer certificate: UnknownIssuer (no trusted CA issued it)"
        );
        assert_eq!(quic_certificate_failure("connection timed out"), None);
    }

    #[test]
    fn io_wrapped_rustls_errors_are_found() {
        let tls = rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        // As hyper hands it over: an io::Error in an io::Error.
        let io = std::io::Error::new(std::io::ErrorKind::InvalidData, tls);
        let io = std::io::Error::other(io);
        let reason = certificate_failure(&io).unwrap();
        assert!(reason.contains("UnknownIssuer"), "{reason}");
        let other = std::io::Error::other("refused");
        assert_eq!(certificate_failure(&other), None);
    }
}
