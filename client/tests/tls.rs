//! The native client against a server with a CA-issued certificate (`--tls-cert/--tls-key`
//! from the shared test PKI): with the CA trusted, REST goes over HTTPS, the WebSocket over
//! WSS and WebTransport is verified by the same roots; without the CA, or with another CA,
//! every path fails with an error that names certificate verification and the server, and
//! nothing reaches the server. Both the library and the `quibble-chat` binary.

use quibble_test_support as support;

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

use quibble_client::{
    Api, ApiError, ChatMessage, Client, ClientError, ClientEvent, ClientOptions, ConversationId,
    Event, TlsError, TlsRoots, TransportChoice, TransportError, TransportKind,
};
use support::pki::TestPki;
use support::{TestServer, wait_with_limit};

const PASSWORD: &str = "correct horse battery";
/// How long an awaited event or a CLI run may take.
const WAIT: Duration = Duration::from_secs(30);

/// A server on the test PKI's certificate, and its `https://` URL.
fn tls_server(dir: &Path, pki: &TestPki) -> (TestServer, String) {
    let args = pki.server_args();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let server = TestServer::start_with_args(dir, &args);
    let url = format!("https://127.0.0.1:{}", server.port);
    (server, url)
}

/// The first event `pick` accepts (others are skipped), within [`WAIT`].
async fn wait_for<T>(client: &Client, mut pick: impl FnMut(ClientEvent) -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let event = tokio::time::timeout_at(deadline, client.next_event())
            .await
            .expect("the awaited event in time")
            .expect("the client is still running");
        if let Some(found) = pick(event) {
            return found;
        }
    }
}

async fn message(client: &Client, room: ConversationId) -> ChatMessage {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Message(m)) if m.conversation == room => Some(m),
        _ => None,
    })
    .await
}

async fn joined(client: &Client, room: ConversationId) {
    wait_for(client, |e| match e {
        ClientEvent::Session(Event::Joined { conversation, .. }) if conversation == room => {
            Some(())
        }
        _ => None,
    })
    .await
}

/// Asserts `text` is a certificate error about `server`.
fn names_certificate_and_server(text: &str, server: &str) {
    assert!(text.contains("certificate verification failed"), "{text}");
    assert!(text.contains(server), "{text}");
}

#[tokio::test]
async fn with_the_ca_the_library_chats_over_https_wss_and_webtransport() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let (_server, url) = tls_server(dir.path(), &pki);
    let tls = TlsRoots::with_ca_cert(&pki.ca_pem).expect("the CA file");
    assert_eq!(tls.ca_file(), Some(pki.ca_pem.as_path()));

    // REST over HTTPS.
    let api = Api::with_tls(&url, tls.clone()).unwrap();
    let alice = api
        .signup("alice", PASSWORD)
        .await
        .expect("signup over HTTPS");
    let bob = api
        .signup("bob", PASSWORD)
        .await
        .expect("signup over HTTPS");
    let room = api.create_room(&alice.token, "secure").await.unwrap();
    api.join_room(&bob.token, room.id).await.unwrap();

    // Realtime over each transport, both verified by the CA: given as roots, or as the file.
    let mut sent = Vec::new();
    for kind in [TransportKind::WebTransport, TransportKind::WebSocket] {
        let choice = match kind {
            TransportKind::WebTransport => TransportChoice::WebTransport,
            TransportKind::WebSocket => TransportChoice::WebSocket,
        };
        let alice_client = Client::connect(
            ClientOptions::new(url.clone(), &alice.token)
                .transport(choice)
                .tls(tls.clone()),
        )
        .await
        .unwrap_or_else(|e| panic!("alice over {kind}: {e}"));
        let bob_client = Client::connect(
            ClientOptions::new(url.clone(), &bob.token)
                .transport(choice)
                .ca_cert(&pki.ca_pem),
        )
        .await
        .unwrap_or_else(|e| panic!("bob over {kind}: {e}"));
        assert_eq!(alice_client.transport(), Some(kind));
        assert_eq!(bob_client.transport(), Some(kind));
        alice_client.join(room.id);
        bob_client.join(room.id);
        joined(&alice_client, room.id).await;
        joined(&bob_client, room.id).await;
        // Skip the replay of what earlier rounds sent.
        for _ in 0..sent.len() {
            message(&bob_client, room.id).await;
        }

        let text = format!("over {kind}");
        let id = alice_client.send(room.id, text.as_str());
        let seq = wait_for(&alice_client, |e| match e {
            ClientEvent::Session(Event::Sent { client_id, seq, .. }) if client_id == id => {
                Some(seq)
            }
            _ => None,
        })
        .await;
        let got = message(&bob_client, room.id).await;
        assert_eq!((got.seq, got.body.as_str()), (seq, text.as_str()));
        sent.push((seq, text));
        alice_client.close().await;
        bob_client.close().await;
    }

    // History: the conversation list over HTTPS, and a new connection's replay (automatic
    // transport choice) holds both messages in order.
    let conversations = api.conversations(&bob.token).await.unwrap();
    let entry = conversations
        .iter()
        .find(|c| c.id == room.id)
        .expect("the room in bob's list");
    let last = entry.last.as_ref().expect("a last message");
    assert_eq!(
        (last.seq, last.preview.as_str()),
        (sent[1].0, sent[1].1.as_str())
    );
    let client = Client::connect(
        ClientOptions::new(url.clone(), &bob.token)
            .api(api.clone())
            .join(room.id),
    )
    .await
    .expect("auto over TLS");
    let mut history = Vec::new();
    for _ in 0..sent.len() {
        let m = message(&client, room.id).await;
        history.push((m.seq, m.body));
    }
    assert_eq!(history, sent);
    client.close().await;
}

#[tokio::test]
async fn without_the_ca_or_with_another_every_path_refuses_the_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = TestPki::new(&other_dir);
    let (_server, url) = tls_server(dir.path(), &pki);
    let trusted = Api::with_tls(&url, TlsRoots::with_ca_cert(&pki.ca_pem).unwrap()).unwrap();
    let wrong_ca = TlsRoots::with_ca_cert(&other.ca_pem).unwrap();

    // REST: the system's roots alone, and another CA.
    for api in [
        Api::new(&url).unwrap(),
        Api::with_tls(&url, wrong_ca.clone()).unwrap(),
    ] {
        let err = api.signup("mallory", PASSWORD).await.unwrap_err();
        assert!(
            matches!(&err, ApiError::Certificate { reason, .. } if reason.contains("UnknownIssuer")),
            "{err:?}"
        );
        names_certificate_and_server(&err.to_string(), &url);
    }
    // Nothing reached the server: the account does not exist.
    let refused = trusted.login("mallory", PASSWORD).await.unwrap_err();
    assert_eq!(refused.code(), Some("invalid_credentials"), "{refused:?}");

    // Realtime: each transport, and the automatic choice, refuse the certificate.
    let login = trusted.signup("alice", PASSWORD).await.unwrap();
    let server = format!("127.0.0.1:{}", _server.port);
    for (label, options) in [
        (
            "system roots",
            ClientOptions::new(url.clone(), &login.token),
        ),
        (
            "another CA",
            ClientOptions::new(url.clone(), &login.token).tls(wrong_ca.clone()),
        ),
    ] {
        for choice in [TransportChoice::WebTransport, TransportChoice::WebSocket] {
            let result = Client::connect(options.clone().transport(choice)).await;
            let err = result.err().unwrap_or_else(|| panic!("{label} {choice:?}"));
            assert!(
                matches!(
                    &err,
                    ClientError::Connect(TransportError::Certificate { server: s, .. }) if *s == server
                ),
                "{label} {choice:?}: {err:?}"
            );
            names_certificate_and_server(&err_chain(&err), &server);
        }
        let err = Client::connect(options.clone().transport(TransportChoice::Auto))
            .await
            .err()
            .unwrap_or_else(|| panic!("{label} auto"));
        assert!(
            matches!(
                &err,
                ClientError::Connect(TransportError::Neither { webtransport, websocket })
                    if matches!(**webtransport, TransportError::Certificate { .. })
                        && matches!(**websocket, TransportError::Certificate { .. })
            ),
            "{label} auto: {err:?}"
        );
    }

    // A CA file that is missing or not PEM is named, with the problem.
    let missing = dir.path().join("missing.pem");
    let err = Client::connect(ClientOptions::new(url.clone(), &login.token).ca_cert(&missing))
        .await
        .expect_err("a missing CA file");
    assert!(
        matches!(&err, ClientError::Tls(TlsError::CaCert { path, .. }) if *path == missing),
        "{err:?}"
    );
    assert!(err.to_string().contains("missing.pem"), "{err}");
    let err = TlsRoots::with_ca_cert(&pki.key_pem).unwrap_err();
    assert!(err.to_string().contains("key.pem"), "{err}");
    assert!(err.to_string().contains("no PEM certificate"), "{err}");
}

/// An error and its sources, as `{:#}` prints them.
fn err_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut next = err.source();
    while let Some(source) = next {
        text.push_str(": ");
        text.push_str(&source.to_string());
        next = source.source();
    }
    text
}

/// Run `quibble-chat --server URL --user alice ARGS…` to the end.
fn chat(url: &str, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quibble-chat"));
    command
        .args(["--server", url, "--user", "alice"])
        .args(args)
        .env("QUIBBLE_PASSWORD", PASSWORD)
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = command.spawn().expect("start quibble-chat");
    wait_with_limit(child, WAIT, &format!("quibble-chat {args:?}"))
}

fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "quibble-chat failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// The one `error: …` line of a failed run.
fn fails(output: Output) -> String {
    assert!(
        !output.status.success(),
        "quibble-chat succeeded unexpectedly: {}",
        String::from_utf8_lossy(&output.stdout)
    );
    let stderr = String::from_utf8(output.stderr).expect("UTF-8 errors");
    assert_eq!(stderr.lines().count(), 1, "not one line: {stderr:?}");
    assert!(stderr.starts_with("error: "), "{stderr:?}");
    stderr
}

#[test]
fn quibble_chat_over_https_with_ca_cert() {
    let dir = tempfile::tempdir().unwrap();
    let pki = TestPki::new(dir.path());
    let other_dir = dir.path().join("other");
    std::fs::create_dir(&other_dir).unwrap();
    let other = TestPki::new(&other_dir);
    let (_server, url) = tls_server(dir.path(), &pki);
    let ca = pki.ca_pem.to_str().unwrap();
    let wrong = other.ca_pem.to_str().unwrap();
    let with_ca = |args: &[&str]| {
        let mut all = vec!["--ca-cert", ca];
        all.extend_from_slice(args);
        chat(&url, &all)
    };

    // Without the CA, or with another: a certificate error naming the server; no account.
    let base = format!("{url}/");
    for extra in [&[][..], &["--ca-cert", wrong][..]] {
        let mut args = extra.to_vec();
        args.push("signup");
        let err = fails(chat(&url, &args));
        names_certificate_and_server(&err, &base);
    }
    assert_eq!(ok(with_ca(&["signup"])), "signed up alice\n");

    let out = ok(with_ca(&["create-room", "Vault"]));
    assert!(out.ends_with("\tVault\n"), "{out}");
    for (i, transport) in ["webtransport", "websocket"].iter().enumerate() {
        let text = format!("hello over {transport}");
        let out = ok(with_ca(&["--transport", transport, "send", "vault", &text]));
        assert_eq!(out, format!("sent {}\n", i + 1), "over {transport}");
    }

    // A send without the CA fails before anything is sent.
    let err = fails(chat(&url, &["send", "vault", "leaked?"]));
    names_certificate_and_server(&err, &base);
    let err = fails(chat(
        &url,
        &["--ca-cert", "/nonexistent/ca.pem", "send", "vault", "x"],
    ));
    assert!(err.contains("/nonexistent/ca.pem"), "{err}");

    assert_eq!(
        ok(with_ca(&["history", "vault"])),
        "1\talice\thello over webtransport\n2\talice\thello over websocket\n"
    );
}
