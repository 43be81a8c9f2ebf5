//! Certificate files read again while the server runs: on SIGHUP, and when the files change
//! on disk. The real `quibble` binary serves certificate A from a test CA, with a WSS
//! connection and a WebTransport session open; the files are replaced with certificate B.
//! New HTTPS handshakes and new WebTransport sessions must then present B (compared byte for
//! byte), `/api/cert` must publish B's hash, and the connections made under A must still carry
//! messages both ways. A bad replacement must leave A served and the server running.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use quibble_protocol::ConversationId;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use serde_json::{Value, json};
use sha2::Digest;
use support::{RawPeer, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wtransport::tls::rustls;
use wtransport::tls::rustls::pki_types::ServerName;

/// Every PEM file these tests write is padded to this size, so a replacement can keep the
/// length (and inode and modification time) of the file it replaces: invisible to the
/// server's file watch, seen only through SIGHUP.
const PADDED: usize = 4096;
/// How long a reload may take to show: SIGHUP is at once; a file change is seen within two
/// polls of 2 s each. Generous for a loaded machine.
const RELOAD_WAIT: Duration = Duration::from_secs(20);

struct Pki {
    ca: CertifiedIssuer<'static, KeyPair>,
}

/// A leaf certificate for 127.0.0.1 and its key, as PEM, and the certificate's DER.
struct Leaf {
    cert_pem: String,
    key_pem: String,
    der: Vec<u8>,
}

impl Pki {
    fn new() -> Pki {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        Pki {
            ca: CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap(),
        }
    }

    fn leaf(&self) -> Leaf {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned(), "localhost".to_owned()])
            .unwrap()
            .signed_by(&key, &self.ca)
            .unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
            der: cert.der().to_vec(),
        }
    }

    fn roots(&self) -> rustls::RootCertStore {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.der().clone()).unwrap();
        roots
    }

    /// A fresh TLS client trusting the CA (no session to resume: each handshake is full and
    /// shows the certificate).
    fn connector(&self) -> tokio_rustls::TlsConnector {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let client = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(self.roots())
            .with_no_client_auth();
        tokio_rustls::TlsConnector::from(Arc::new(client))
    }

    /// A fresh WebTransport client config trusting the CA.
    fn wt_config(&self) -> wtransport::ClientConfig {
        let tls = wtransport::tls::client::build_default_tls_config(Arc::new(self.roots()), None);
        wtransport::ClientConfig::builder()
            .with_bind_default()
            .with_custom_tls(tls)
            .build()
    }
}

/// `contents` padded with newlines to [`PADDED`] bytes.
fn padded(contents: &str) -> Vec<u8> {
    let mut bytes = contents.as_bytes().to_vec();
    assert!(bytes.len() <= PADDED);
    bytes.resize(PADDED, b'\n');
    bytes
}

/// Replace `path`'s contents as a deploy script would: a new file renamed over the old one.
fn replace(path: &Path, contents: &str) {
    let staged = path.with_extension("new");
    std::fs::write(&staged, padded(contents)).unwrap();
    std::fs::rename(&staged, path).unwrap();
}

/// Rewrite `path` in place keeping its length, inode and modification time.
fn replace_unseen(path: &Path, contents: &str) {
    let modified = std::fs::metadata(path).unwrap().modified().unwrap();
    std::fs::write(path, padded(contents)).unwrap();
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(modified).unwrap();
}

struct Files {
    cert: PathBuf,
    key: PathBuf,
}

fn write_pair(dir: &Path, leaf: &Leaf) -> Files {
    let files = Files {
        cert: dir.join("cert.pem"),
        key: dir.join("key.pem"),
    };
    replace(&files.cert, &leaf.cert_pem);
    replace(&files.key, &leaf.key_pem);
    files
}

fn start(dir: &Path, files: &Files) -> TestServer {
    TestServer::start_with(
        &dir.join("data"),
        &[
            "--tls-cert",
            files.cert.to_str().unwrap(),
            "--tls-key",
            files.key.to_str().unwrap(),
        ],
    )
}

/// Send SIGHUP to the server by its PID.
fn hangup(server: &TestServer) {
    let status = Command::new("kill")
        .args(["-HUP", &server.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// One request over a new HTTPS connection: the certificate the server presented, the status
/// and the JSON body.
async fn https(
    pki: &Pki,
    port: u16,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (Vec<u8>, u16, Value) {
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .unwrap();
        let mut tls = pki
            .connector()
            .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
            .await
            .expect("TLS with a certificate of the CA");
        let presented = tls.get_ref().1.peer_certificates().unwrap()[0].to_vec();
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let auth = token
            .map(|t| format!("Authorization: Bearer {t}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let mut response = String::new();
        tls.read_to_string(&mut response).await.unwrap();
        let status = response[9..12].parse().unwrap();
        let json = response
            .find("\r\n\r\n")
            .and_then(|at| serde_json::from_str(&response[at + 4..]).ok())
            .unwrap_or(Value::Null);
        (presented, status, json)
    };
    tokio::time::timeout(support::WAIT, exchange)
        .await
        .expect("an HTTPS answer in time")
}

/// The certificate a new HTTPS handshake gets.
async fn https_certificate(pki: &Pki, port: u16) -> Vec<u8> {
    let (presented, status, _) = https(pki, port, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    presented
}

/// The certificate a new WebTransport session gets.
async fn webtransport_certificate(pki: &Pki, port: u16) -> Vec<u8> {
    let endpoint = wtransport::Endpoint::client(pki.wt_config()).unwrap();
    let session = tokio::time::timeout(
        support::WAIT,
        endpoint.connect(format!("https://127.0.0.1:{port}/wt")),
    )
    .await
    .expect("a WebTransport answer in time")
    .expect("WebTransport with a certificate of the CA");
    let chain = session.peer_identity().expect("the server's certificate");
    let der = chain.as_slice()[0].der().to_vec();
    session.close(wtransport::VarInt::from_u32(0), b"probe");
    der
}

/// Wait until new HTTPS handshakes present `want`.
async fn until_https_presents(pki: &Pki, port: u16, want: &[u8]) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while https_certificate(pki, port).await != want {
        assert!(
            Instant::now() < deadline,
            "HTTPS did not present the new certificate within {RELOAD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The value of `quibble_certificate_reloads_total{outcome}` (0 when not yet counted).
async fn reloads(pki: &Pki, port: u16, outcome: &str) -> u64 {
    let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    let mut tls = pki
        .connector()
        .connect(ServerName::try_from("127.0.0.1").unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut text = String::new();
    tls.read_to_string(&mut text).await.unwrap();
    let series = format!("quibble_certificate_reloads_total{{outcome=\"{outcome}\"}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&series))
        .map_or(0, |v| v.trim().parse().unwrap())
}

async fn until_reloads(pki: &Pki, port: u16, outcome: &str, count: u64) {
    let deadline = Instant::now() + RELOAD_WAIT;
    while reloads(pki, port, outcome).await < count {
        assert!(
            Instant::now() < deadline,
            "no {count} `{outcome}` reloads within {RELOAD_WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

async fn published_hash(pki: &Pki, port: u16) -> String {
    let (_, status, body) = https(pki, port, "GET", "/api/cert", None, None).await;
    assert_eq!(status, 200);
    body["sha256_hex"].as_str().unwrap().to_owned()
}

fn hex_sha256(der: &[u8]) -> String {
    sha2::Sha256::digest(der)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Alice over WSS and Bob over WebTransport, both in one room, on conversation stream 1.
struct Pair {
    alice: RawPeer,
    bob: RawPeer,
}

async fn connect_pair(pki: &Pki, port: u16) -> Pair {
    let signup = |name: &'static str| async move {
        let body = json!({"username": name, "password": "correct horse"});
        let (_, status, body) = https(pki, port, "POST", "/api/signup", None, Some(body)).await;
        assert_eq!(status, 201, "{body}");
        body["token"].as_str().unwrap().to_owned()
    };
    let (ta, tb) = (signup("alice").await, signup("bob").await);
    let room = json!({"name": "lobby"});
    let (_, status, body) = https(pki, port, "POST", "/api/rooms", Some(&ta), Some(room)).await;
    assert_eq!(status, 201, "{body}");
    let room = ConversationId(body["id"].as_u64().unwrap());
    let join = format!("/api/rooms/{}/join", room.0);
    let (_, status, body) = https(pki, port, "POST", &join, Some(&tb), None).await;
    assert_eq!(status, 200, "{body}");

    let mut alice = RawPeer::websocket_tls(port, &pki.connector())
        .await
        .unwrap();
    let mut bob = RawPeer::webtransport_with(port, pki.wt_config())
        .await
        .unwrap();
    for (peer, token) in [(&mut alice, &ta), (&mut bob, &tb)] {
        let welcome = peer.hello(token).await;
        assert!(
            matches!(welcome, quibble_protocol::ServerFrame::Welcome { .. }),
            "{welcome:?}"
        );
        peer.join(1, room, None).await;
    }
    Pair { alice, bob }
}

/// A message each way between the two.
async fn both_ways(pair: &mut Pair, round: u64) {
    let text = format!("alice over WSS, round {round}");
    pair.alice.say(1, 2 * round, &text).await;
    receives(&mut pair.bob, &text).await;
    let text = format!("bob over WebTransport, round {round}");
    pair.bob.say(1, 2 * round + 1, &text).await;
    receives(&mut pair.alice, &text).await;
}

/// Wait for `text` on stream 1, past the peer's own messages (each wait has a deadline).
async fn receives(peer: &mut RawPeer, text: &str) {
    while peer.next_message(1).await.body != text {}
}

/// The server presents A; live connections; the files become B by `change`; B is presented
/// and published, and the live connections still work.
async fn reload_scenario(change: impl FnOnce(&TestServer, &Files, &Leaf)) {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (a, b) = (pki.leaf(), pki.leaf());
    let files = write_pair(dir.path(), &a);
    let server = start(dir.path(), &files);
    let port = server.port;

    assert_eq!(https_certificate(&pki, port).await, a.der);
    assert_eq!(webtransport_certificate(&pki, port).await, a.der);
    assert_eq!(published_hash(&pki, port).await, hex_sha256(&a.der));
    let mut pair = connect_pair(&pki, port).await;
    both_ways(&mut pair, 0).await;

    change(&server, &files, &b);
    until_https_presents(&pki, port, &b.der).await;
    assert_eq!(webtransport_certificate(&pki, port).await, b.der);
    assert_eq!(published_hash(&pki, port).await, hex_sha256(&b.der));
    until_reloads(&pki, port, "changed", 1).await;
    assert_eq!(reloads(&pki, port, "failed").await, 0);

    // The connections made under A carry on.
    both_ways(&mut pair, 1).await;

    // Reading the same files again changes nothing.
    hangup(&server);
    until_reloads(&pki, port, "unchanged", 1).await;
    hangup(&server);
    until_reloads(&pki, port, "unchanged", 2).await;
    assert_eq!(reloads(&pki, port, "changed").await, 1);
    assert_eq!(https_certificate(&pki, port).await, b.der);
    both_ways(&mut pair, 2).await;

    pair.alice.close().await;
    pair.bob.close().await;
    assert!(server.stop().success());
}

#[tokio::test]
async fn sighup_reloads_for_new_handshakes_and_keeps_live_connections() {
    reload_scenario(|server, files, b| {
        // Invisible to the file watch: only the signal can make the server read them.
        replace_unseen(&files.cert, &b.cert_pem);
        replace_unseen(&files.key, &b.key_pem);
        hangup(server);
    })
    .await;
}

#[tokio::test]
async fn changed_files_are_reloaded_without_a_signal() {
    reload_scenario(|_, files, b| {
        replace(&files.cert, &b.cert_pem);
        replace(&files.key, &b.key_pem);
    })
    .await;
}

#[tokio::test]
async fn a_bad_replacement_keeps_the_old_certificate_served() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let (a, b, c) = (pki.leaf(), pki.leaf(), pki.leaf());
    let files = write_pair(dir.path(), &a);
    let server = start(dir.path(), &files);
    let port = server.port;
    let mut pair = connect_pair(&pki, port).await;

    // A key that is not a key.
    replace_unseen(
        &files.key,
        "-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n",
    );
    hangup(&server);
    until_reloads(&pki, port, "failed", 1).await;
    assert_eq!(https_certificate(&pki, port).await, a.der);
    // B's certificate with C's key.
    replace_unseen(&files.cert, &b.cert_pem);
    replace_unseen(&files.key, &c.key_pem);
    hangup(&server);
    until_reloads(&pki, port, "failed", 2).await;
    // The same mismatch, seen as a change on disk.
    replace(&files.key, &c.key_pem);
    until_reloads(&pki, port, "failed", 3).await;

    assert_eq!(https_certificate(&pki, port).await, a.der);
    assert_eq!(webtransport_certificate(&pki, port).await, a.der);
    assert_eq!(published_hash(&pki, port).await, hex_sha256(&a.der));
    assert_eq!(reloads(&pki, port, "changed").await, 0);
    both_ways(&mut pair, 1).await;
    let log = server.log();
    let key = files.key.display().to_string();
    assert!(
        log.contains(&format!("{key}: the private key cannot be used")),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "{key}: the private key does not match the certificate in"
        )),
        "{log}"
    );

    // Fixed: B with its own key is taken.
    replace(&files.key, &b.key_pem);
    until_https_presents(&pki, port, &b.der).await;
    pair.alice.close().await;
    pair.bob.close().await;
    assert!(server.stop().success());
}

/// A pair that cannot be served stops the start, with the file and the problem on standard
/// error.
#[test]
fn a_bad_file_at_start_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    let files = write_pair(dir.path(), &pki.leaf());
    let other = pki.leaf();
    std::fs::write(&files.key, other.key_pem).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_quibble"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path().join("data"))
        .arg("--tls-cert")
        .arg(&files.cert)
        .arg("--tls-key")
        .arg(&files.key)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + support::WAIT;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!(
                "the server did not refuse the pair within {:?}",
                support::WAIT
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success());
    let mut stderr = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut stderr).unwrap();
    let key = files.key.display().to_string();
    let cert = files.cert.display().to_string();
    assert!(
        stderr.contains(&format!(
            "{key}: the private key does not match the certificate in {cert}"
        )),
        "{stderr}"
    );
}
