//! End-to-end test of `quibble-chat`'s block commands: the real binary against the real
//! `quibble` server. `block`, `unblock` and `blocks` run to completion; `history` shows the
//! blocked user's messages as hidden markers to the blocker only, and again after unblocking;
//! the blocked user's friend request is refused. Every run is bounded.

mod chat_cli;

use chat_cli::{fails, ok};
use quibble_test_support::TestServer;

#[test]
fn block_unblock_and_blocks_from_the_command_line() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["alice", "bob", "carol"] {
        ok(&server, user, &["signup"]);
    }
    ok(&server, "alice", &["create-room", "lobby"]);
    assert_eq!(
        ok(&server, "bob", &["send", "lobby", "from bob"]),
        "sent 1\n"
    );
    assert_eq!(
        ok(&server, "carol", &["send", "lobby", "from carol"]),
        "sent 2\n"
    );

    assert_eq!(ok(&server, "alice", &["block", "bob"]), "blocked\tbob\n");
    assert_eq!(
        ok(&server, "alice", &["block", "bob"]),
        "already_blocked\tbob\n"
    );
    let list = ok(&server, "alice", &["blocks"]);
    let (name, since) = list.trim_end().split_once('\t').expect("two fields");
    assert_eq!(name, "bob");
    assert!(since.parse::<u64>().expect("ms") > 0, "{list:?}");
    assert_eq!(ok(&server, "carol", &["blocks"]), "");

    assert_eq!(
        ok(&server, "alice", &["history", "lobby"]),
        "1\t\t(hidden: blocked user)\n2\tcarol\tfrom carol\n"
    );
    assert_eq!(
        ok(&server, "carol", &["history", "lobby"]),
        "1\tbob\tfrom bob\n2\tcarol\tfrom carol\n"
    );
    let refused = fails(&server, "bob", &["add", "alice"]);
    assert!(refused.contains("not allowed"), "{refused}");
    let unknown = fails(&server, "alice", &["block", "nobody"]);
    assert!(unknown.contains("nobody"), "{unknown}");

    assert_eq!(
        ok(&server, "alice", &["unblock", "bob"]),
        "unblocked\tbob\n"
    );
    assert_eq!(
        ok(&server, "alice", &["unblock", "bob"]),
        "not_blocked\tbob\n"
    );
    assert_eq!(ok(&server, "alice", &["blocks"]), "");
    assert_eq!(
        ok(&server, "alice", &["history", "lobby"]),
        "1\tbob\tfrom bob\n2\tcarol\tfrom carol\n"
    );
}
