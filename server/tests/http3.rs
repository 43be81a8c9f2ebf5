//! HTTP/3: with a CA-issued certificate from PEM files, the server advertises HTTP/3 in
//! `Alt-Svc` on its HTTPS responses, and the native client's HTTP/3 API (`Http3Api`, trusting
//! the CA) reaches the same routes over it: status, certificate, sign-up, rooms, error bodies
//! and the request-body limit. A certificate reloaded from its files (SIGHUP) is what new HTTP/3
//! connections get. Without a certificate there is no `Alt-Svc`.

mod support;

use std::sync::Arc;

use axum::http::Method;
use quibble_client::{ApiError, Http3Api, Http3Error};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use support::{TestServer, WAIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::{CertificateDer, ServerName};

/// Make a CA and a server certificate for 127.0.0.1 it signed; write the server's PEM files
/// into `dir` and return the CA's certificate.
fn make_pki(dir: &std::path::Path) -> CertificateDer<'static> {
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
        .unwrap()
        .signed_by(&leaf_key, &ca)
        .unwrap();
    std::fs::write(dir.join("cert.pem"), leaf.pem()).unwrap();
    std::fs::write(dir.join("key.pem"), leaf_key.serialize_pem()).unwrap();
    ca.der().clone()
}

fn roots(ca: &CertificateDer<'static>) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    roots
}

fn tls_server(dir: &std::path::Path, extra: &[&str]) -> TestServer {
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    let mut args = vec![
        "--tls-cert",
        cert.to_str().unwrap(),
        "--tls-key",
        key.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    TestServer::start_with(&dir.join("data"), &args)
}

/// `GET path` over HTTPS (HTTP/1.1), trusting `ca`: the whole response as text.
async fn https_get(ca: &CertificateDer<'static>, port: u16, path: &str) -> String {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let client = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots(ca))
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(client));
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS");
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    tls.write_all(request.as_bytes()).await.unwrap();
    let mut response = String::new();
    tokio::time::timeout(WAIT, tls.read_to_string(&mut response))
        .await
        .expect("a response in time")
        .unwrap();
    response
}

/// The HTTP/3 port an `Alt-Svc: h3=":PORT"; ma=86400` header in `response` names.
fn alt_svc_port(response: &str) -> Option<u16> {
    let head = response.split("\r\n\r\n").next()?;
    let value = head.lines().find_map(|line| {
        let (name, value) = line.split_once(':')?;
        name.eq_ignore_ascii_case("alt-svc").then(|| value.trim())
    })?;
    let rest = value.strip_prefix("h3=\":")?;
    let (port, tail) = rest.split_once('"')?;
    assert_eq!(tail.trim(), "; ma=86400", "{value}");
    port.parse().ok()
}

#[tokio::test]
async fn the_native_client_uses_the_api_over_http3_advertised_by_alt_svc() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_pki(dir.path());
    let server = tls_server(dir.path(), &[]);
    let response = https_get(&ca, server.port, "/healthz").await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let h3_port = alt_svc_port(&response).expect("an Alt-Svc header for h3");
    assert_ne!(h3_port, server.port, "HTTP/3 has a UDP port of its own");

    let api = tokio::time::timeout(
        WAIT,
        Http3Api::connect(&format!("https://127.0.0.1:{h3_port}"), roots(&ca)),
    )
    .await
    .expect("connected in time")
    .expect("an HTTP/3 connection trusting the CA");
    let health = api.health().await.unwrap();
    assert_eq!(health["status"], "ok", "{health}");
    let cert = api.cert().await.unwrap();
    assert_eq!(
        cert.webtransport_port, server.port,
        "the page still learns WebTransport's port"
    );
    assert_eq!(cert.sha256_hex.len(), 64);

    let login = api.signup("h3user", "correct horse battery").await.unwrap();
    assert_eq!(login.user.username, "h3user");
    let room = api.create_room(&login.token, "over-quic").await.unwrap();
    assert_eq!(room.name, "over-quic");
    let page: serde_json::Value = api
        .call(Method::GET, "rooms", Some(&login.token), None::<&()>)
        .await
        .unwrap();
    assert!(
        page["rooms"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "over-quic"),
        "{page}"
    );
    // Error bodies and the router's body limit hold over HTTP/3 too.
    match api.login("h3user", "wrong password!").await {
        Err(Http3Error::Api(ApiError::Server { status, code, .. })) => {
            assert_eq!((status, code.as_str()), (401, "invalid_credentials"));
        }
        other => panic!("expected invalid_credentials, got {other:?}"),
    }
    let big = bytes::Bytes::from(vec![b'x'; 200 * 1024]);
    let refused = api.send(Method::POST, "/api/signup", None, Some(big)).await;
    match refused {
        Ok(response) => assert_eq!(response.status, 413, "{response:?}"),
        // The server may stop reading the body before the client has sent all of it.
        Err(Http3Error::Stream(_)) => {}
        Err(e) => panic!("{e:?}"),
    }

    // Counted: every request above went through the HTTP/3 server.
    let metrics = api.send(Method::GET, "/metrics", None, None).await.unwrap();
    let text = String::from_utf8_lossy(&metrics.body).into_owned();
    let requests: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("quibble_http3_requests_total "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no HTTP/3 request count in\n{text}"));
    assert!(requests >= 7.0, "{requests}");
    api.close().await;
}

#[tokio::test]
async fn a_configured_http3_port_is_the_one_advertised() {
    let dir = tempfile::tempdir().unwrap();
    let ca = make_pki(dir.path());
    let port = {
        let probe = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let server = tls_server(dir.path(), &["--http3-port", &port.to_string()]);
    let response = https_get(&ca, server.port, "/api/cert").await;
    assert_eq!(alt_svc_port(&response), Some(port), "{response}");
    let api = Http3Api::connect(&format!("https://localhost:{port}"), roots(&ca))
        .await
        .unwrap();
    assert_eq!(api.cert().await.unwrap().webtransport_port, server.port);
    api.close().await;
}

#[tokio::test]
async fn no_alt_svc_and_no_http3_without_a_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let response = reqwest::get(format!("{}/healthz", server.http()))
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("alt-svc").is_none(),
        "{:?}",
        response.headers()
    );
}

#[tokio::test]
async fn a_reloaded_certificate_reaches_http3() {
    let dir = tempfile::tempdir().unwrap();
    let old_ca = make_pki(dir.path());
    let server = tls_server(dir.path(), &[]);
    let response = https_get(&old_ca, server.port, "/healthz").await;
    let h3 = format!(
        "https://127.0.0.1:{}",
        alt_svc_port(&response).expect("Alt-Svc")
    );
    Http3Api::connect(&h3, roots(&old_ca))
        .await
        .expect("the first certificate")
        .close()
        .await;
    // New files from another CA, then SIGHUP: new HTTP/3 connections present the new one.
    let new_ca = make_pki(dir.path());
    let hup = std::process::Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(hup.success());
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        match Http3Api::connect(&h3, roots(&new_ca)).await {
            Ok(api) => {
                assert_eq!(api.health().await.unwrap()["status"], "ok");
                api.close().await;
                break;
            }
            Err(_) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
            }
            Err(e) => panic!("the reloaded certificate never reached HTTP/3: {e:?}"),
        }
    }
    assert!(
        Http3Api::connect(&h3, roots(&old_ca)).await.is_err(),
        "the old certificate is no longer presented"
    );
}
