//! End-to-end tests of `quibble-chat`'s moderation commands (`promote`, `demote`, `ban`,
//! `unban`, `bans`, `ip-ban add|list|remove`, `audit`): the real binary against the real
//! `quibble` server, whose first admin is made with `quibble admin promote`. Every run is
//! bounded.

mod chat_cli;

use chat_cli::{fails, ok};
use quibble_test_support::TestServer;

#[test]
fn an_admin_moderates_from_the_command_line_and_a_user_cannot() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    for user in ["ann", "mal"] {
        ok(&server, user, &["signup"]);
    }
    let refused = fails(&server, "mal", &["ban", "ann", "--reason", "mine now"]);
    assert!(refused.contains("only admins may do this"), "{refused}");
    fails(&server, "ann", &["ip-ban", "list"]);

    server.promote("ann");

    let banned = ok(
        &server,
        "ann",
        &["ban", "mal", "--reason", "spam", "--for", "1h"],
    );
    let fields: Vec<&str> = banned.trim_end().split('\t').collect();
    assert_eq!((fields[0], fields[1], fields[3]), ("banned", "mal", "spam"));
    assert!(
        fields[2].starts_with("20") && fields[2].ends_with('Z'),
        "{banned}"
    );
    assert!(ok(&server, "ann", &["bans"]).starts_with("mal\t20"));
    let refused = fails(&server, "mal", &["rooms"]);
    assert!(refused.contains("banned until"), "{refused}");
    assert_eq!(ok(&server, "ann", &["unban", "mal"]), "unbanned\tmal\n");
    assert_eq!(ok(&server, "ann", &["unban", "mal"]), "not banned\tmal\n");
    ok(&server, "mal", &["rooms"]);

    assert_eq!(
        ok(
            &server,
            "ann",
            &["ip-ban", "add", "198.51.100.9/24", "--reason", "abuse"]
        ),
        "banned\t198.51.100.0/24\t-\tabuse\n"
    );
    assert_eq!(
        ok(&server, "ann", &["ip-ban", "list"]),
        "198.51.100.0/24\t-\tann\tabuse\n"
    );
    let refused = fails(
        &server,
        "ann",
        &["ip-ban", "add", "nowhere", "--reason", "x"],
    );
    assert!(refused.contains("is not an IP address"), "{refused}");
    assert_eq!(
        ok(&server, "ann", &["ip-ban", "remove", "198.51.100.0/24"]),
        "removed\t198.51.100.0/24\n"
    );
    assert_eq!(ok(&server, "ann", &["promote", "mal"]), "admin\tmal\n");
    assert_eq!(ok(&server, "mal", &["demote", "ann"]), "user\tann\n");

    let log = ok(&server, "mal", &["audit", "--limit", "4"]);
    let rows: Vec<(&str, &str, &str)> = log
        .lines()
        .map(|line| {
            let f: Vec<&str> = line.split('\t').collect();
            (f[2], f[3], f[4])
        })
        .collect();
    assert_eq!(
        rows,
        [
            ("mal", "demote", "ann"),
            ("ann", "promote", "mal"),
            ("ann", "ip_ban_remove", "198.51.100.0/24"),
            ("ann", "ip_ban_add", "198.51.100.0/24"),
        ],
        "{log}"
    );
}
