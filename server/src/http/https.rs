//! HTTPS for the HTTP side when certificate files are configured: the TLS settings (the
//! configured certificate and its key in whichever PEM form it came, HTTP/1.1 by ALPN). The handshake itself runs per connection, under
//! its deadline, in `http::listener`.

use std::sync::Arc;

use wtransport::Identity;
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::{
    CertificateDer, PrivateKeyDer, PrivatePkcs1KeyDer, PrivatePkcs8KeyDer, PrivateSec1KeyDer,
};

/// The TLS settings for HTTPS from the server's identity (the configured PEM files).
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let chain: Vec<CertificateDer<'static>> = identity
        .certificate_chain()
        .as_slice()
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    // The identity keeps the key's DER but not its form (the PEM file may hold PKCS#8, PKCS#1
    // or SEC1, all of which QUIC takes): try each, and report the first form's error.
    let der = identity.private_key().secret_der();
    let forms = [
        PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(der.to_vec())),
        PrivateKeyDer::Pkcs1(PrivatePkcs1KeyDer::from(der.to_vec())),
        PrivateKeyDer::Sec1(PrivateSec1KeyDer::from(der.to_vec())),
    ];
    let mut first_error = None;
    for key in forms {
        match with_key(chain.clone(), key) {
            Ok(config) => return Ok(config),
            Err(error) => {
                first_error.get_or_insert(error);
            }
        }
    }
    Err(first_error.unwrap_or(rustls::Error::NoCertificatesPresented))
}

fn with_key(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
