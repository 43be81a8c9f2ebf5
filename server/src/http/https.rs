//! HTTPS for the HTTP side when certificate files are configured: the TLS settings (the
//! server's certificate resolver, `tls::Certificates`, so each handshake presents the
//! certificate current at that moment and a reload needs no new config; HTTP/1.1 by ALPN). The
//! handshake itself runs per connection, under its deadline, in `http::listener`.

use std::sync::Arc;

use wtransport::tls::rustls;
use wtransport::tls::rustls::server::ResolvesServerCert;

/// The TLS settings for HTTPS presenting what `certs` resolves.
pub fn server_config(
    certs: Arc<dyn ResolvesServerCert>,
) -> Result<Arc<rustls::ServerConfig>, rustls::Error> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_cert_resolver(certs);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
