//! Accounts under attack, against the real binary over real HTTP on loopback: a sign-up flood
//! from hundreds of addresses keeps the server's memory and threads bounded while a normal
//! client logs in and chats; concurrent password guesses verify no more than the budget; a
//! guesser at one address does not lock the owner out at another; sign-up name checks are
//! rate-limited. Source addresses are distinct loopback addresses (127.0.0.0/8 is all local).

mod support;

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::{ProcStatus, RawPeer, TestServer, proc_status};

/// How long the sign-up flood lasts.
const FLOOD: Duration = Duration::from_secs(5);
/// Flooding addresses, each sending a sign-up every [`FLOOD_PAUSE`].
const FLOOD_ADDRESSES: u8 = 200;
const FLOOD_PAUSE: Duration = Duration::from_millis(100);
/// One argon2 hashing thread's memory (19 MiB) plus slack.
const PER_HASH_THREAD: u64 = 20 << 20;
/// The server's own memory apart from hashing: runtime, store, certificates, a few hundred
/// HTTP connections.
const BASE_RSS: u64 = 128 << 20;

/// An HTTP client whose connections come from `ip`.
fn client_from(ip: IpAddr) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(ip)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("client")
}

fn loopback(a: u8, b: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, a, b))
}

/// POST `body` to `path`: status, Retry-After (if any) and the JSON body.
async fn post(
    http: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: Value,
) -> (u16, Option<u64>, Value) {
    try_post(http, server, path, body).await.expect("request")
}

/// [`post`], or the error when there is no answer (within the client's 30 s timeout).
async fn try_post(
    http: &reqwest::Client,
    server: &TestServer,
    path: &str,
    body: Value,
) -> Result<(u16, Option<u64>, Value), reqwest::Error> {
    let resp = http
        .post(format!("{}{path}", server.http()))
        .json(&body)
        .send()
        .await?;
    let status = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = resp.json().await.unwrap_or(Value::Null);
    Ok((status, retry_after, body))
}

fn credentials(username: &str, password: &str) -> Value {
    json!({"username": username, "password": password})
}

/// A refusal must say why and when to come back.
fn assert_refusal(status: u16, retry_after: Option<u64>, body: &Value) {
    let code = match status {
        429 => "rate_limited",
        503 => "overloaded",
        other => panic!("unexpected status {other}: {body}"),
    };
    assert_eq!(body["error"]["code"], code, "{status} {body}");
    assert!(
        retry_after.is_some_and(|s| s >= 1),
        "{status} without Retry-After"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn signup_flood_keeps_memory_and_threads_bounded_and_a_normal_client_served() {
    let dir = tempfile::tempdir().unwrap();
    let server = Arc::new(TestServer::start(&dir.path().join("data")));
    let pid = server.pid();
    let api = server.api();
    let token = api.signup("owner").await;
    let room = api.create_room(&token, "lobby").await;
    let mut peer = RawPeer::websocket(&server).await;
    peer.hello(&token).await;
    peer.join(1, room, None).await;
    let before = proc_status(pid);

    let hash_threads = std::thread::available_parallelism().map_or(1, |n| n.get().min(4)) as u64;
    let rss_bound = BASE_RSS + hash_threads * PER_HASH_THREAD;
    // Hashing threads, tokio's capped blocking pool (store reads: 8 + 4, see main.rs), slack.
    let thread_bound = before.threads + hash_threads + 12 + 4;

    // Sample the server while the flood runs; stop at once (and fail) past the bound, so the
    // old unbounded code cannot take the machine's memory.
    let flooding = Arc::new(AtomicBool::new(true));
    let sampler = tokio::spawn({
        let flooding = flooding.clone();
        async move {
            let mut peak = ProcStatus::default();
            while flooding.load(Ordering::Relaxed) {
                let now = proc_status(pid);
                peak.rss = peak.rss.max(now.rss);
                peak.threads = peak.threads.max(now.threads);
                if peak.rss > rss_bound {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            peak
        }
    });

    let started = Instant::now();
    let mut attackers = Vec::new();
    for n in 0..FLOOD_ADDRESSES {
        let server = server.clone();
        attackers.push(tokio::spawn(async move {
            let http = client_from(loopback(1 + n / 100, 1 + n % 100));
            let mut answers = Vec::new();
            let mut i = 0;
            while started.elapsed() < FLOOD {
                let name = format!("flood{n}x{i}");
                i += 1;
                answers.push(
                    post(
                        &http,
                        &server,
                        "/api/signup",
                        credentials(&name, "flood password"),
                    )
                    .await,
                );
                tokio::time::sleep(FLOOD_PAUSE).await;
            }
            answers
        }));
    }

    // Meanwhile a normal client logs in (honouring Retry-After, as clients do) and chats,
    // from its own address.
    let owner = client_from(loopback(0, 1));
    let mut logins = Vec::new();
    let mut login_retries = 0;
    let mut acks = Vec::new();
    let mut client_id = 0;
    while started.elapsed() < FLOOD {
        let t = Instant::now();
        for attempt in 1.. {
            let (status, retry_after, body) = post(
                &owner,
                &server,
                "/api/login",
                credentials("owner", "correct horse"),
            )
            .await;
            if status == 200 {
                break;
            }
            assert!(
                status == 503 && attempt < 3,
                "a normal login during the flood: {body}"
            );
            assert_refusal(status, retry_after, &body);
            login_retries += 1;
            tokio::time::sleep(Duration::from_secs(retry_after.unwrap_or(1))).await;
        }
        logins.push(t.elapsed());
        for _ in 0..5 {
            client_id += 1;
            let t = Instant::now();
            peer.say(1, client_id, "still here").await;
            acks.push(t.elapsed());
        }
        if sampler.is_finished() {
            break;
        }
    }
    flooding.store(false, Ordering::Relaxed);
    let peak = sampler.await.unwrap();
    assert!(
        peak.rss <= rss_bound,
        "server RSS {} MiB during the flood, bound {} MiB",
        peak.rss >> 20,
        rss_bound >> 20
    );

    let (mut created, mut busy, mut limited) = (0, 0, 0);
    for attacker in attackers {
        for (status, retry_after, body) in attacker.await.unwrap() {
            match status {
                201 => created += 1,
                _ => {
                    assert_refusal(status, retry_after, &body);
                    if status == 503 {
                        busy += 1
                    } else {
                        limited += 1
                    }
                }
            }
        }
    }
    let after = proc_status(pid);
    logins.sort();
    acks.sort();
    eprintln!(
        "flood: {} sign-ups ({created} created, {busy} × 503, {limited} × 429) in {:?}; \
         server RSS {} MiB before, peak {} MiB, after {} MiB (bound {} MiB); threads {} before, \
         peak {}, after {}; normal client: {} logins ({login_retries} retried after 503), max {:?}; \
         {} acks, median {:?}, max {:?}",
        created + busy + limited,
        started.elapsed(),
        before.rss >> 20,
        peak.rss >> 20,
        after.rss >> 20,
        rss_bound >> 20,
        before.threads,
        peak.threads,
        after.threads,
        logins.len(),
        logins.last().unwrap(),
        acks.len(),
        acks[acks.len() / 2],
        acks.last().unwrap(),
    );
    assert!(created >= 1 && busy >= 1, "{created} created, {busy} busy");
    assert!(
        peak.threads <= thread_bound,
        "{} server threads during the flood, bound {thread_bound}",
        peak.threads
    );
    assert!(after.rss <= rss_bound);
    assert!(
        *logins.last().unwrap() < Duration::from_secs(10),
        "{logins:?}"
    );
}

#[tokio::test]
async fn concurrent_guesses_verify_at_most_the_budget_and_the_owner_elsewhere_gets_in() {
    let dir = tempfile::tempdir().unwrap();
    // Room for 300 concurrent connections from one address: the login budget is under test
    // here, not the per-address connection budget (edge.rs tests that).
    let server = Arc::new(TestServer::start_with_config(
        &dir.path().join("data"),
        "max_connections_per_ip = 1000\n",
    ));
    server.api().signup("victim").await;
    let attacker = client_from(loopback(0, 1));
    let guesses: Vec<_> = (0..300)
        .map(|i| {
            let (attacker, server) = (attacker.clone(), server.clone());
            tokio::spawn(async move {
                try_post(
                    &attacker,
                    &server,
                    "/api/login",
                    credentials("victim", &format!("guess number {i}")),
                )
                .await
            })
        })
        .collect();
    let (mut verified, mut unanswered) = (0, 0);
    for guess in guesses {
        match guess.await.unwrap() {
            Ok((401, _, _)) => verified += 1,
            Ok((status, retry_after, body)) => assert_refusal(status, retry_after, &body),
            Err(_) => unanswered += 1,
        }
    }
    // The (account, address) budget is 10 failures: no more passwords were checked, and every
    // other guess was refused at once.
    assert!(
        verified <= 10 && unanswered == 0,
        "{verified} of 300 guesses were checked, {unanswered} got no answer in 30 s"
    );
    // Guesses the server was too busy to check (503) were given back: spend the rest, one by
    // one, until the lockout.
    for i in 0..40 {
        let (status, retry_after, body) = post(
            &attacker,
            &server,
            "/api/login",
            credentials("victim", &format!("late guess {i}")),
        )
        .await;
        match status {
            401 => verified += 1,
            429 => break,
            _ => assert_refusal(status, retry_after, &body),
        }
    }
    assert_eq!(verified, 10, "passwords checked before the lockout");

    // The right password from the guesser's address waits out the lockout...
    let (status, retry_after, body) = post(
        &attacker,
        &server,
        "/api/login",
        credentials("victim", "correct horse"),
    )
    .await;
    assert_eq!(status, 429, "{body}");
    assert_refusal(status, retry_after, &body);
    // ...but the owner at another address logs in.
    let owner = client_from(loopback(0, 2));
    let (status, _, body) = post(
        &owner,
        &server,
        "/api/login",
        credentials("victim", "correct horse"),
    )
    .await;
    assert_eq!(status, 200, "the owner is locked out: {body}");
}

#[tokio::test]
async fn signup_name_checks_are_rate_limited_per_address() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(&dir.path().join("data"));
    let prober = client_from(loopback(0, 1));
    let (status, _, body) = post(
        &prober,
        &server,
        "/api/signup",
        credentials("taken", "correct horse"),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    // The default budget is 64 sign-ups per address: 63 more "is it taken?" answers...
    for _ in 0..63 {
        let (status, _, body) = post(
            &prober,
            &server,
            "/api/signup",
            credentials("taken", "correct horse"),
        )
        .await;
        assert_eq!(status, 409, "{body}");
    }
    // ...then 429 with Retry-After, whatever the name.
    for name in ["taken", "free-name"] {
        let (status, retry_after, body) = post(
            &prober,
            &server,
            "/api/signup",
            credentials(name, "correct horse"),
        )
        .await;
        assert_eq!(status, 429, "{body}");
        assert_refusal(status, retry_after, &body);
    }
    // Another address has its own budget.
    let other = client_from(loopback(0, 3));
    let (status, _, body) = post(
        &other,
        &server,
        "/api/signup",
        credentials("taken", "correct horse"),
    )
    .await;
    assert_eq!(status, 409, "{body}");
}
