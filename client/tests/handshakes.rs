//! Many WebTransport handshakes at once against the real `quibble` server all succeed. Under
//! that load wtransport now and then misreads a peer's HTTP/3 SETTINGS frame and ends the
//! handshake with an HTTP/3 error or stalls it, which the client must ride out by trying again
//! (see the client's `transport::wt`). The sessions are held open as they are made: the load
//! of those already open (a UDP socket and timers each, here and in the server) is what makes
//! the misreading likely; with a single try, this test failed in each of several runs.

use quibble_test_support as support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use quibble_client::{Api, Client, ClientOptions, TransportChoice, TransportKind};
use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
use support::TestServer;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Sessions opened and held, at most this many being opened at once.
const SESSIONS: usize = 2500;
const AT_ONCE: usize = 8;
/// Open files kept for everything else (the runtime, HTTP connections, stdio).
const RESERVE: usize = 200;
/// The whole test's deadline (a stalled handshake's retry comes after 3 s).
const LIMIT: Duration = Duration::from_secs(25);

/// Sessions this process can hold: each is a UDP socket, so the soft open-file limit is raised
/// to the hard one.
fn sessions_that_fit() -> usize {
    let limit = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        },
    );
    match getrlimit(Resource::Nofile).current {
        Some(soft) => usize::try_from(soft)
            .unwrap_or(usize::MAX)
            .saturating_sub(RESERVE)
            .min(SESSIONS),
        None => SESSIONS,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 8)]
async fn many_concurrent_webtransport_handshakes_all_succeed() {
    let sessions = sessions_that_fit();
    let dir = tempfile::tempdir().unwrap();
    // Room for every session, and for the certificate fetches beside them.
    let config = format!(
        "max_connections_per_ip = {}\nmax_unauthenticated_per_ip = {sessions}\n",
        2 * sessions
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
    for _ in 0..sessions {
        let options = ClientOptions::new(server.url(), &token)
            .transport(TransportChoice::WebTransport)
            .api(api.clone());
        let gate = gate.clone();
        handshakes.spawn(async move {
            let _turn = gate.acquire_owned().await.expect("the gate stays open");
            Client::connect(options).await
        });
    }
    // Held until the end of the test.
    let mut held = Vec::with_capacity(sessions);
    let mut failures = Vec::new();
    while let Some(joined) =
        tokio::time::timeout_at((started + LIMIT).into(), handshakes.join_next())
            .await
            .expect("all handshakes within the limit")
    {
        match joined.expect("no handshake task panics") {
            Ok(client) if client.transport() == Some(TransportKind::WebTransport) => {
                held.push(client)
            }
            Ok(client) => failures.push(format!("connected over {:?}", client.transport())),
            Err(e) => failures.push(format!("{e:?}")),
        }
    }
    let retried = server.log_text().matches("handshake failed: QUIC").count();
    eprintln!(
        "{sessions} sessions in {:?}; handshakes the server failed (clients tried again): \
         {retried}",
        started.elapsed()
    );
    assert!(
        failures.is_empty(),
        "{} failed: {failures:?}",
        failures.len()
    );
}
