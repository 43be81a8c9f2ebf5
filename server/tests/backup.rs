//! `quibble backup` and `quibble restore` against real `quibble` processes: a backup taken
//! mid-traffic (WebTransport and WebSocket senders) through a running server's admin socket,
//! restored into a new data directory, holds every message acknowledged before it began, in
//! order with contiguous seqs, and the accounts and rooms; restores are refused while a server
//! runs and for a file that is not a store; backups of a stopped server, `--force`, and a
//! server on PostgreSQL (refused, pointing at pg_dump).

mod support;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use quibble_protocol::{ConversationId, Cursor, ServerFrame};
use quibble_test_support::postgres::Postgres;
use support::{RawPeer, TestServer, WAIT};

/// Runs `quibble restore --from FROM --data-dir DATA_DIR EXTRA…` in `cwd`.
async fn restore(cwd: &Path, from: &Path, data_dir: &Path, extra: &[&str]) -> Output {
    let (from, data_dir) = (from.to_str().unwrap(), data_dir.to_str().unwrap());
    let mut args = vec!["restore", "--from", from, "--data-dir", data_dir];
    args.extend_from_slice(extra);
    quibble(cwd, &args).await
}

/// Runs `quibble ARGS` in `cwd` and waits for it, at most 60 s.
async fn quibble(cwd: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_quibble"));
    command.current_dir(cwd).args(args).env("RUST_LOG", "warn");
    let run = tokio::task::spawn_blocking(move || command.output().expect("run quibble"));
    tokio::time::timeout(Duration::from_secs(60), run)
        .await
        .expect("quibble finished within 60 s")
        .unwrap()
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The value of the `name<TAB>value` line `name` in a command's output.
fn field(output: &Output, name: &str) -> String {
    let stdout = text(&output.stdout);
    stdout
        .lines()
        .find_map(|line| line.strip_prefix(&format!("{name}\t")))
        .unwrap_or_else(|| panic!("no {name} in {stdout:?}"))
        .to_owned()
}

/// (conversation, seq, body) of each acknowledged message, in acknowledgement order.
type Acked = Arc<Mutex<Vec<(ConversationId, u64, String)>>>;

/// Sends on `peer`'s `stream` (joined to `conversation`) until `stop`, recording each ack.
fn sender(
    mut peer: RawPeer,
    stream: u64,
    conversation: ConversationId,
    name: &'static str,
    acked: Acked,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<RawPeer> {
    tokio::spawn(async move {
        let mut client_id = 0;
        while !stop.load(Ordering::Relaxed) {
            client_id += 1;
            let body = format!("{name} {client_id}");
            let seq = peer.say(stream, client_id, &body).await;
            acked.lock().unwrap().push((conversation, seq, body));
        }
        peer
    })
}

/// Waits until `acked` holds at least `n` messages.
async fn wait_for(acked: &Acked, n: usize) {
    let deadline = Instant::now() + WAIT;
    while acked.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "fewer than {n} acks within {WAIT:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_backup_mid_traffic_restores_everything_acknowledged_before_it_began() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let alice = api.signup("alice").await;
    let bob = api.signup("bob").await;
    let room = api.create_room(&alice, "lobby").await;
    api.join_room(&bob, room).await;
    let dm = api.befriend(&alice, &bob, "alice", "bob").await;

    let mut alice_wt = RawPeer::webtransport(&server).await;
    let ServerFrame::Welcome { epoch, .. } = alice_wt.hello(&alice).await else {
        panic!("no welcome")
    };
    alice_wt.join(1, room, None).await;
    let mut bob_ws = RawPeer::websocket(&server).await;
    bob_ws.hello(&bob).await;
    bob_ws.join(1, room, None).await;
    let mut bob_wt = RawPeer::webtransport(&server).await;
    bob_wt.hello(&bob).await;
    bob_wt.join(1, dm, None).await;

    let acked = Acked::default();
    let stop = Arc::new(AtomicBool::new(false));
    let senders = [
        sender(
            alice_wt,
            1,
            room,
            "alice-wt",
            Arc::clone(&acked),
            Arc::clone(&stop),
        ),
        sender(
            bob_ws,
            1,
            room,
            "bob-ws",
            Arc::clone(&acked),
            Arc::clone(&stop),
        ),
        sender(
            bob_wt,
            1,
            dm,
            "bob-wt-dm",
            Arc::clone(&acked),
            Arc::clone(&stop),
        ),
    ];
    wait_for(&acked, 60).await;

    // Everything acknowledged so far must be in the backup; a relative FILE is the caller's.
    let before = acked.lock().unwrap().clone();
    let backup = quibble(
        dir.path(),
        &[
            "backup",
            "--to",
            "mid.redb",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert!(
        backup.status.success(),
        "backup failed: {}",
        text(&backup.stderr)
    );
    let file = dir.path().join("mid.redb");
    assert_eq!(field(&backup, "written"), file.display().to_string());
    let during = acked.lock().unwrap().len();
    wait_for(&acked, during + 30).await;
    stop.store(true, Ordering::Relaxed);
    for sender in senders {
        tokio::time::timeout(WAIT, sender).await.unwrap().unwrap();
    }
    let all = acked.lock().unwrap().clone();
    assert!(server.stop().success(), "clean exit on SIGTERM");
    let backed_up: usize = field(&backup, "messages").parse().unwrap();
    assert!(
        backed_up >= before.len() && backed_up < all.len(),
        "the backup is a snapshot mid-traffic: {} acked before it, {backed_up} in it, {} in all",
        before.len(),
        all.len()
    );
    assert_eq!(field(&backup, "users"), "2");
    assert_eq!(field(&backup, "conversations"), "2");

    // Restore into a new data directory and start a server on it.
    let restored_dir = dir.path().join("restored");
    let restore = restore(dir.path(), &file, &restored_dir, &[]).await;
    assert!(
        restore.status.success(),
        "restore failed: {}",
        text(&restore.stderr)
    );
    assert_eq!(field(&restore, "messages"), backed_up.to_string());
    let server = TestServer::start(&restored_dir);
    let api = server.api();
    // Accounts (passwords and the sessions of before) and rooms are back.
    api.login("alice").await;
    let bob = api.login("bob").await;
    let (status, rooms) = api.call("GET", "/api/rooms", Some(&alice), None).await;
    assert_eq!(status, 200);
    assert_eq!(rooms["rooms"][0]["name"], "lobby");

    let mut peer = RawPeer::websocket(&server).await;
    let ServerFrame::Welcome {
        epoch: restored, ..
    } = peer.hello(&bob).await
    else {
        panic!("no welcome")
    };
    assert_ne!(
        restored, epoch,
        "a restored store has a new epoch: clients reload"
    );
    for (stream, conversation) in [(1, room), (2, dm)] {
        let cursor = Cursor {
            epoch: restored,
            seq: 0,
        };
        let (_, history) = peer.join(stream, conversation, Some(cursor)).await;
        let seqs: Vec<u64> = history.iter().map(|m| m.seq).collect();
        let contiguous: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, contiguous, "seqs from 1, in order, without gaps");
        let mut count = 0;
        for (c, seq, body) in before.iter().filter(|(c, ..)| *c == conversation) {
            let held = history
                .get(*seq as usize - 1)
                .unwrap_or_else(|| panic!("acked {c:?}/{seq} before the backup is missing"));
            assert_eq!(&held.body, body, "message {seq}");
            count += 1;
        }
        assert!(count > 0, "traffic in {conversation:?} before the backup");
        // What the backup holds is what the live server had acknowledged under those seqs.
        for (_, seq, body) in all.iter().filter(|(c, ..)| *c == conversation) {
            if let Some(held) = history.get(*seq as usize - 1) {
                assert_eq!(&held.body, body);
            }
        }
    }
    // The restored server takes new messages after the restored heads.
    let head = peer.say(1, 9_999, "after the restore").await;
    let in_room = all.iter().filter(|(c, ..)| *c == room).count() as u64;
    assert!(head <= in_room + 1);
}

#[tokio::test]
async fn restore_is_refused_while_a_server_runs_and_for_a_file_that_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let token = server.api().signup("alice").await;
    let file = dir.path().join("b.redb");
    let backup = quibble(
        dir.path(),
        &[
            "backup",
            "--to",
            file.to_str().unwrap(),
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert!(backup.status.success(), "{}", text(&backup.stderr));

    let refused = restore(dir.path(), &file, &data, &[]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("a server is running on"),
        "{}",
        text(&refused.stderr)
    );
    // The running server is untouched.
    let (status, _) = server
        .api()
        .call("GET", "/api/account", Some(&token), None)
        .await;
    assert_eq!(status, 200);
    assert!(server.stop().success());

    let notes = dir.path().join("notes.txt");
    std::fs::write(&notes, "these are not messages\n".repeat(200)).unwrap();
    let elsewhere = dir.path().join("elsewhere");
    let refused = restore(dir.path(), &notes, &elsewhere, &[]).await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("is not a Quibble store"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !elsewhere.join("quibble.redb").exists(),
        "nothing installed"
    );

    // A FIFO is refused at once (opening it would wait for a writer).
    let fifo = dir.path().join("fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let from_fifo = tokio::time::timeout(
        Duration::from_secs(30),
        restore(dir.path(), &fifo, &elsewhere, &[]),
    )
    .await
    .expect("a FIFO is refused without waiting");
    assert!(
        text(&from_fifo.stderr).contains("not a regular file"),
        "{}",
        text(&from_fifo.stderr)
    );

    // A server configured for PostgreSQL never reads a restored redb file: refused.
    let config = dir.path().join("pg.toml");
    std::fs::write(&config, "postgres = \"postgres://q@127.0.0.1:1/q\"\n").unwrap();
    let on_postgres = restore(
        dir.path(),
        &file,
        &elsewhere,
        &["--config", config.to_str().unwrap()],
    )
    .await;
    assert!(!on_postgres.status.success());
    assert!(
        text(&on_postgres.stderr).contains("PostgreSQL"),
        "{}",
        text(&on_postgres.stderr)
    );
    assert!(!elsewhere.join("quibble.redb").exists());

    // Restoring over a stopped server's store keeps the old one aside.
    let restore = restore(dir.path(), &file, &data, &[]).await;
    assert!(restore.status.success(), "{}", text(&restore.stderr));
    let kept = field(&restore, "kept");
    assert!(kept.contains("quibble.redb.before-restore-"), "{kept}");
    assert!(Path::new(&kept).is_file());
}

#[tokio::test]
async fn a_stopped_server_is_backed_up_from_its_data_dir_and_force_replaces() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start(&data);
    let api = server.api();
    let token = api.signup("alice").await;
    api.create_room(&token, "lobby").await;
    assert!(server.stop().success());

    let data_arg = data.to_str().unwrap();
    let args = ["backup", "--to", "stopped.redb", "--data-dir", data_arg];
    let first = quibble(dir.path(), &args).await;
    assert!(first.status.success(), "{}", text(&first.stderr));
    assert_eq!(field(&first, "users"), "1");
    assert_eq!(field(&first, "conversations"), "1");
    let again = quibble(dir.path(), &args).await;
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("exists: pass --force"),
        "{}",
        text(&again.stderr)
    );
    let mut forced = args.to_vec();
    forced.push("--force");
    let forced = quibble(dir.path(), &forced).await;
    assert!(forced.status.success(), "{}", text(&forced.stderr));

    // An empty directory has no store to back up.
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let none = quibble(
        dir.path(),
        &[
            "backup",
            "--to",
            "x.redb",
            "--data-dir",
            empty.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!none.status.success());
    assert!(
        text(&none.stderr).contains("no store at"),
        "{}",
        text(&none.stderr)
    );

    let help = quibble(dir.path(), &["backup", "--help"]).await;
    let help = text(&help.stdout);
    assert!(
        help.contains("pg_dump") && help.contains("acknowledged"),
        "{help}"
    );
}

#[tokio::test]
async fn a_server_on_postgresql_refuses_and_points_at_pg_dump() {
    let url = tokio::task::spawn_blocking(|| Postgres::shared().fresh_database())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = TestServer::start_with(&data, &["--postgres", &url]);
    let refused = quibble(
        dir.path(),
        &[
            "backup",
            "--to",
            "pg.redb",
            "--data-dir",
            data.to_str().unwrap(),
        ],
    )
    .await;
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("pg_dump"),
        "{}",
        text(&refused.stderr)
    );
    assert!(!dir.path().join("pg.redb").exists());
    assert!(server.stop().success());
}
