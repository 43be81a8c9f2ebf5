//! A throwaway PKI for TLS tests: a CA made with rcgen and a server certificate it signed
//! for `127.0.0.1`, `::1` and `localhost`, written as PEM files into a test's directory
//! (`ca.pem`, `cert.pem`, `key.pem`), so a real server can serve with the certificate
//! (`--tls-cert`, `--tls-key`) and a client can trust it through the CA alone. Each
//! [`TestPki::new`] makes a new CA, so a second one is "a CA the server does not chain to".

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair};
use rustls_pki_types::CertificateDer;

/// A CA and a server certificate it signed, as files.
pub struct TestPki {
    /// The CA certificate, PEM.
    pub ca_pem: PathBuf,
    /// The server's certificate, PEM.
    pub cert_pem: PathBuf,
    /// The server's private key, PEM (PKCS#8).
    pub key_pem: PathBuf,
    ca_der: CertificateDer<'static>,
}

impl TestPki {
    /// Make a CA and a server certificate for 127.0.0.1, ::1 and localhost; write the three
    /// PEM files into `dir`.
    pub fn new(dir: &Path) -> TestPki {
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own, as real CAs have: another test CA is then an unknown issuer,
        // not one whose signature fails.
        let name = format!("Quibble test CA {:016x}", rand::random::<u64>());
        ca_params.distinguished_name.push(DnType::CommonName, name);
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
            .expect("self-signed CA");
        let leaf_key = KeyPair::generate().expect("server key");
        let names = ["127.0.0.1", "::1", "localhost"].map(str::to_owned);
        let leaf = CertificateParams::new(names.to_vec())
            .expect("server params")
            .signed_by(&leaf_key, &ca)
            .expect("server certificate");
        let pki = TestPki {
            ca_pem: dir.join("ca.pem"),
            cert_pem: dir.join("cert.pem"),
            key_pem: dir.join("key.pem"),
            ca_der: ca.der().clone(),
        };
        std::fs::write(&pki.ca_pem, ca.pem()).expect("write ca.pem");
        std::fs::write(&pki.cert_pem, leaf.pem()).expect("write cert.pem");
        std::fs::write(&pki.key_pem, leaf_key.serialize_pem()).expect("write key.pem");
        pki
    }

    /// The CA certificate, DER.
    pub fn ca_der(&self) -> CertificateDer<'static> {
        self.ca_der.clone()
    }

    /// `quibble serve` arguments that serve with the server certificate.
    pub fn server_args(&self) -> Vec<String> {
        let path = |p: &Path| p.to_str().expect("a UTF-8 temp path").to_owned();
        vec![
            "--tls-cert".to_owned(),
            path(&self.cert_pem),
            "--tls-key".to_owned(),
            path(&self.key_pem),
        ]
    }
}
