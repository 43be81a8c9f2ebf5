//! The bench's delivery checks against a server that gets delivery wrong on purpose: a copy
//! of the `ws` peer (bench/peers/ws-server.mjs, same protocol) that sends each author's
//! message 2 twice, never sends message 3 to anyone but its author, and holds message 4 back
//! until message 5 has gone out. `versus --only ws` against it must count exactly those
//! duplicates, losses and out-of-order arrivals (the bots' bookkeeping is allocation-free
//! now; its checks must be as strict as before), and fail. Run pinned (`--pin`) where there
//! are two CPUs, and the report must say which core each side had. Skipped, saying so, only
//! where `node` is missing (CI installs it with bench/peers/setup).

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(120);
const PEERS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/peers");

/// The faulty server: the `ws` peer's protocol, with the three faults above.
const FAULTY: &str = r#"
import { WebSocketServer, WebSocket } from 'ws';
const rooms = new Map();
const held = new Map();
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, perMessageDeflate: false });
wss.on('connection', (ws, req) => {
  const query = new URL(req.url ?? '/', 'http://localhost').searchParams;
  const user = query.get('user');
  const name = query.get('room');
  let room = rooms.get(name);
  if (!room) {
    room = { seq: 0, members: new Set() };
    rooms.set(name, room);
  }
  room.members.add(ws);
  ws.on('close', () => room.members.delete(ws));
  ws.on('message', (data) => {
    const msg = JSON.parse(data);
    room.seq += 1;
    ws.send(JSON.stringify({ t: 'ack', c: msg.c, s: room.seq }));
    const out = JSON.stringify({ t: 'msg', r: name, a: user, c: msg.c, s: room.seq, b: msg.b });
    const everyone = () => {
      for (const member of room.members) {
        if (member.readyState === WebSocket.OPEN) member.send(out);
      }
    };
    if (msg.c === 2) {
      everyone();
      everyone();
    } else if (msg.c === 3) {
      ws.send(out);
    } else if (msg.c === 4) {
      held.set(user, everyone);
    } else {
      everyone();
      if (msg.c === 5) held.get(user)?.();
    }
  });
  ws.send(JSON.stringify({ t: 'joined', r: name }));
});
wss.on('listening', () => console.log(`listening ${wss.address().port}`));
"#;

fn node_is_installed() -> bool {
    Command::new("node")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success())
}

#[test]
fn duplicates_losses_and_reordering_are_each_counted() {
    if !node_is_installed() {
        eprintln!("SKIPPED: `node` is not installed (bench/peers/setup installs it)");
        return;
    }
    let modules = std::path::Path::new(PEERS).join("node_modules");
    assert!(
        modules.is_dir(),
        "bench/peers/node_modules is missing: run bench/peers/setup"
    );
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("ws-server.mjs"), FAULTY).expect("write the faulty peer");
    std::os::unix::fs::symlink(&modules, dir.path().join("node_modules"))
        .expect("link the peers' node_modules");
    let peers = dir.path().to_str().expect("a UTF-8 path");
    let pin = std::thread::available_parallelism().is_ok_and(|n| n.get() >= 2);
    let mut args = vec![
        "versus",
        "--only",
        "ws",
        "--peers-dir",
        peers,
        "--rooms",
        "1",
        "--users-per-room",
        "3",
        "--messages",
        "6",
        "--rate",
        "20",
        // What never comes is waited for until the timeout.
        "--timeout",
        "10",
        "--json",
    ];
    if pin {
        args.push("--pin");
    }
    let bench = Command::new(env!("CARGO_BIN_EXE_quibble-bench"))
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start quibble-bench");
    let output = quibble_test_support::wait_with_limit(bench, LIMIT, "quibble-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        !output.status.success(),
        "a faulty server passed; stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let report: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("no JSON report ({e}); stdout:\n{stdout}\nstderr:\n{stderr}"));
    let run = &report["servers"][0]["run"];
    assert_eq!(run["status"], "timed_out", "{run:#}");
    let stats = &run["stats"];
    let count = |name: &str| stats[name].as_u64().unwrap_or(u64::MAX);
    // 3 authors x 6 messages, each owed to 3 members.
    assert_eq!((count("sent"), count("acked")), (18, 18), "{run:#}");
    assert_eq!(count("expected"), 54, "{run:#}");
    // Message 2 of each author twice at each member.
    assert_eq!(count("duplicated"), 9, "{run:#}");
    // Message 3 of each author reached its author only: 2 members missed it.
    assert_eq!((count("delivered"), count("lost")), (48, 6), "{run:#}");
    // Message 4 of each author came after its message 5, at every member.
    assert_eq!(count("out_of_order"), 9, "{run:#}");
    assert_eq!(count("unexpected"), 0, "{run:#}");
    let pinning = &report["scenario"]["pinning"];
    if pin {
        assert!(pinning["bench_cpu"].is_u64(), "{pinning}");
        assert!(pinning["server_cpu"].is_u64(), "{pinning}");
        assert_ne!(pinning["bench_cpu"], pinning["server_cpu"]);
    } else {
        assert!(pinning.is_null(), "{pinning}");
    }
}
