//! HTTPS for the HTTP side when certificate files are configured: the TLS settings (the
//! configured certificate, HTTP/1.1 by ALPN). The handshake itself runs per connection, under
//! its deadline, in `http::listener`.

use std::sync::Arc;

use wtransport::Identity;
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

/// The TLS settings for HTTPS from the server's identity (the configured PEM files).
pub fn server_config(identity: &Identity) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let chain: Vec<CertificateDer<'static>> = identity
        .certificate_chain()
        .as_slice()
        .iter()
        .map(|c| CertificateDer::from(c.der().to_vec()))
        .collect();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
        identity.private_key().secret_der().to_vec(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
