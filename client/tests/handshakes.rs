//! Many WebTransport handshakes at once against the real `quibble` server all succeed: under
//! that load wtransport now and then misreads a peer's HTTP/3 SETTINGS frame and closes the
//! handshake with an HTTP/3 error, which the client must ride out by trying again (see the
//! client's `transport::wt`).

use quibble_test_support as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quibble_client::{Api, Client, ClientOptions, TransportChoice, TransportKind};
use support::TestServer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Sessions opened, and at most this many at once.
const SESSIONS: usize = 1200;
const AT_ONCE: usize = 32;
/// The whole test's deadline.
const LIMIT: Duration = Duration::from_secs(25);

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn many_concurrent_webtransport_handshakes_all_succeed() {
    let dir = tempfile::tempdir().unwrap();
    // Room for every session, and for the certificate fetches beside them.
    let config = format!(
        "max_connections_per_ip = {}\nmax_unauthenticated_per_ip = {SESSIONS}\n",
        2 * SESSIONS
    );
    let server = TestServer::start_with_config(dir.path(), &config);
    let api = Api::new(&server.url()).unwrap();
    let token = api
        .signup("hana", "correct horse battery")
        .await
        .expect("signup")
        .token;

    let started = Instant::now();
    let gate = Arc::new(Semaphore::new(AT_ONCE));
    let mut handshakes = JoinSet::new();
    for _ in 0..SESSIONS {
        let options = ClientOptions::new(server.url(), &token)
            .transport(TransportChoice::WebTransport)
            .api(api.clone());
        let gate = gate.clone();
        handshakes.spawn(async move {
            let _turn = gate.acquire_owned().await.expect("the gate stays open");
            let client = Client::connect(options).await?;
            Ok::<_, quibble_client::ClientError>(client)
        });
    }
    let mut failures = Vec::new();
    let mut clients = Vec::new();
    while let Some(joined) =
        tokio::time::timeout_at((started + LIMIT).into(), handshakes.join_next())
            .await
            .expect("all handshakes within the limit")
    {
        match joined.expect("no handshake task panics") {
            Ok(client) if client.transport() == Some(TransportKind::WebTransport) => {
                clients.push(client)
            }
            Ok(client) => failures.push(format!("{:?}", client.transport())),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    let glitches = server
        .log_text()
        .matches("WebTransport handshake failed")
        .count();
    eprintln!(
        "{SESSIONS} sessions in {:?}; handshakes the server failed (and clients retried): \
         {glitches}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}
