//! A CA-issued certificate from PEM files: HTTPS on the TCP port and WebTransport on the UDP
//! port both present it, and clients that trust the CA connect without pinning a hash.

mod support;

use std::sync::Arc;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use quibble_protocol::{ClientFrame, PROTOCOL_VERSION, ServerFrame, codec};
use rustls::pki_types::pem::PemObject;
use support::TestServer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::ServerName;

struct Pki {
    ca_der: rustls::pki_types::CertificateDer<'static>,
}

/// Make a CA and a server certificate for 127.0.0.1 it signed; write the server's PEM files
/// (`cert.pem`, `key.pem`) into `dir` (the shared test PKI).
fn make_pki(dir: &std::path::Path) -> Pki {
    Pki {
        ca_der: quibble_test_support::pki::TestPki::new(dir).ca_der(),
    }
}

fn roots(pki: &Pki) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(pki.ca_der.clone()).unwrap();
    roots
}

/// A server in `dir` with `make_pki`'s certificate and the key in `key`.
fn tls_server(dir: &std::path::Path, key: &std::path::Path) -> TestServer {
    let cert = dir.join("cert.pem");
    TestServer::start_with(
        &dir.join("data"),
        &[
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    )
}

/// `GET path` over HTTPS to `port`, trusting only `pki`'s CA: the connector and the response.
async fn https_get(pki: &Pki, port: u16, path: &str) -> (tokio_rustls::TlsConnector, String) {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(pki))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector
        .connect(name, tcp)
        .await
        .expect("TLS with the CA's certificate");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    (connector, response)
}

/// The ECPrivateKey (SEC1) inside a PKCS#8 EC key: the last field of its outer SEQUENCE, an
/// OCTET STRING (short DER walk: tag, length, contents).
fn sec1_of(pkcs8: &[u8]) -> Vec<u8> {
    fn field(der: &[u8]) -> (u8, &[u8], &[u8]) {
        let (tag, len_byte) = (der[0], der[1] as usize);
        let (len, start) = if len_byte < 0x80 {
            (len_byte, 2)
        } else {
            let n = len_byte & 0x7f;
            (
                der[2..2 + n].iter().fold(0, |l, b| l << 8 | *b as usize),
                2 + n,
            )
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

#[tokio::test]
async fn a_key_in_sec1_form_serves_https_too() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let pkcs8 = std::fs::read_to_string(dir.path().join("key.pem")).unwrap();
    let der = rustls::pki_types::PrivatePkcs8KeyDer::from_pem_slice(pkcs8.as_bytes()).unwrap();
    let sec1 = rustls::pki_types::PrivateSec1KeyDer::from(sec1_of(der.secret_pkcs8_der()));
    let body = STANDARD.encode(sec1.secret_sec1_der());
    let lines: Vec<&str> = body
        .as_bytes()
        .chunks(64)
        .map(|c| std::str::from_utf8(c).unwrap())
        .collect();
    let key = dir.path().join("sec1.pem");
    std::fs::write(
        &key,
        format!(
            "-----BEGIN EC PRIVATE KEY-----\n{}\n-----END EC PRIVATE KEY-----\n",
            lines.join("\n")
        ),
    )
    .unwrap();
    let server = tls_server(dir.path(), &key);
    let (_, response) = https_get(&pki, server.port, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn configured_certificate_serves_https_and_webtransport() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let server = tls_server(dir.path(), &dir.path().join("key.pem"));

    // HTTPS, trusting only the CA.
    let (connector, response) = https_get(&pki, server.port, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""status":"ok""#), "{response}");

    // Plain HTTP on the TLS port gets nowhere.
    let mut plain = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    plain
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, plain.read_to_end(&mut buf)).await;
    assert!(!String::from_utf8_lossy(&buf).contains("200 OK"));

    // WebTransport presents the same certificate: a client trusting the CA gets in.
    let token = {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
            .await
            .unwrap();
        let mut tls = connector
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .unwrap();
        let body = r#"{"username":"alice","password":"correct horse"}"#;
        let request = format!(
            "POST /api/signup HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        assert!(response.starts_with("HTTP/1.1 201"), "{response}");
        let json = &response[response.find("\r\n\r\n").unwrap() + 4..];
        let value: serde_json::Value = serde_json::from_str(json).unwrap();
        value["token"].as_str().unwrap().to_owned()
    };
    let wt_tls = wtransport::tls::client::build_default_tls_config(Arc::new(roots(&pki)), None);
    let config = wtransport::ClientConfig::builder()
        .with_bind_default()
        .with_custom_tls(wt_tls)
        .build();
    let endpoint = wtransport::Endpoint::client(config).unwrap();
    let conn = endpoint
        .connect(format!("https://127.0.0.1:{}/wt", server.port))
        .await
        .expect("WebTransport with the CA's certificate");
    let (mut send, mut recv) = conn.open_bi().await.unwrap().await.unwrap();
    let hello = codec::encode(&ClientFrame::Hello {
        version: PROTOCOL_VERSION,
        token,
    })
    .unwrap();
    send.write_all(&hello).await.unwrap();
    let mut decoder = codec::Decoder::new();
    let mut buf = vec![0u8; 4096];
    let welcome = loop {
        let n = recv.read(&mut buf).await.unwrap().expect("stream open");
        decoder.push(&buf[..n]);
        if let Some(frame) = decoder.next_frame::<ServerFrame>().unwrap() {
            break frame;
        }
    };
    assert!(
        matches!(welcome, ServerFrame::Welcome { .. }),
        "{welcome:?}"
    );
}

#[tokio::test]
async fn a_silent_or_idle_https_client_is_dropped_by_its_deadlines() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path());
    let config = dir.path().join("quibble.toml");
    std::fs::write(
        &config,
        "tls_handshake_timeout_ms = 500\nhttp_header_timeout_ms = 500\n",
    )
    .unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    let server = TestServer::start_with(
        &dir.path().join("data"),
        &[
            "--config",
            config.to_str().unwrap(),
            "--tls-cert",
            cert.to_str().unwrap(),
            "--tls-key",
            key.to_str().unwrap(),
        ],
    );
    // No ClientHello at all: closed by the handshake deadline.
    let mut silent = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), silent.read(&mut buf))
        .await
        .expect("closed by the TLS handshake deadline");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));

    // Handshaken, then no request: closed by the header deadline.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(&pki))
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", server.port))
        .await
        .unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(client))
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let read = tokio::time::timeout(std::time::Duration::from_secs(5), tls.read(&mut buf))
        .await
        .expect("closed by the header deadline");
    assert!(matches!(read, Ok(0) | Err(_)));
    assert!(started.elapsed() < std::time::Duration::from_secs(2));
    assert!(server.stop().success());
}
