//! The WebTransport endpoint's TLS configuration: what wtransport's defaults set (TLS 1.3
//! only, the WebTransport ALPN, no client certificates) with the server's certificate
//! resolver (`tls::Certificates`, so a reloaded certificate needs no new endpoint config) and
//! a cheaper set of cipher suites. rustls offers TLS_AES_256_GCM_SHA384 first and a rustls client (the native
//! client, the bench) asks for it first; its key schedule hashes with SHA-384, which has no
//! instruction-set support here, and made 4 % of the server's CPU during a ramp of new
//! sessions (HKDF and the handshake transcript). The suites kept are the two SHA-256 ones
//! every QUIC stack has (QUIC's Initial packets need AES-128-GCM-SHA256 anyway): AES-128-GCM
//! and ChaCha20-Poly1305, in the client's order, so a client without AES hardware still gets
//! ChaCha20.
//!
//! Session tickets stay as rustls makes them (two per handshake, a server-wide cache of 256):
//! a client that resumes skips the certificate's signature and its verification. Turning them
//! off saved ~400 B per idle session but cost 7–35 % more server CPU and 10–38 % more client
//! CPU per session in a ramp of reconnecting native clients (bench/README.md, "Session 5:
//! WebTransport sessions").

use std::sync::Arc;

use wtransport::tls::WEBTRANSPORT_ALPN;
use wtransport::tls::rustls::server::ResolvesServerCert;
use wtransport::tls::rustls::{self, CipherSuite, ServerConfig};

/// The suites offered, all TLS 1.3 with SHA-256.
const SUITES: [CipherSuite; 2] = [
    CipherSuite::TLS13_AES_128_GCM_SHA256,
    CipherSuite::TLS13_CHACHA20_POLY1305_SHA256,
];

/// The TLS configuration of a WebTransport endpoint presenting what `certs` resolves.
pub fn config(certs: Arc<dyn ResolvesServerCert>) -> Result<ServerConfig, rustls::Error> {
    let mut provider = rustls::crypto::ring::default_provider();
    provider
        .cipher_suites
        .retain(|suite| SUITES.contains(&suite.suite()));
    let mut config = ServerConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![WEBTRANSPORT_ALPN.to_vec()];
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sha256_suites_and_the_webtransport_alpn() {
        let certs = crate::tls::Certificates::load(None, vec!["localhost".into()]).unwrap();
        let config = config(Arc::new(certs)).unwrap();
        let suites: Vec<CipherSuite> = config
            .crypto_provider()
            .cipher_suites
            .iter()
            .map(|s| s.suite())
            .collect();
        assert_eq!(suites, SUITES);
        assert_eq!(config.alpn_protocols, [b"h3".to_vec()]);
    }
}
