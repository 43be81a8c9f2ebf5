//! WebTransport sessions sharing endpoints against the real `quibble` server: seven clients
//! given one pool of three sessions per endpoint open three UDP sockets between them (counted
//! in this process's open files, and by the pool's local addresses), and every session works:
//! a message sent on one reaches all seven.

use quibble_test_support as support;

use std::collections::HashSet;
use std::time::Duration;

use quibble_client::{
    Api, Client, ClientEvent, ClientOptions, Event, TransportChoice, TransportKind, WtEndpoints,
};
use support::TestServer;
use tokio::time::timeout;

const SESSIONS: usize = 7;
const PER_ENDPOINT: usize = 3;
const LIMIT: Duration = Duration::from_secs(20);

/// The inodes of this process's open UDP sockets (IPv4 and IPv6).
fn udp_sockets() -> HashSet<u64> {
    let mut udp_inodes = HashSet::new();
    for table in ["/proc/net/udp", "/proc/net/udp6"] {
        let Ok(text) = std::fs::read_to_string(table) else {
            continue;
        };
        // Columns: sl local remote st tx:rx tr:when retrnsmt uid timeout inode ...
        udp_inodes.extend(
            text.lines()
                .skip(1)
                .filter_map(|line| line.split_whitespace().nth(9)?.parse::<u64>().ok()),
        );
    }
    std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|entry| std::fs::read_link(entry.ok()?.path()).ok())
        .filter_map(|target| {
            let target = target.to_string_lossy().into_owned();
            target
                .strip_prefix("socket:[")?
                .strip_suffix(']')?
                .parse::<u64>()
                .ok()
        })
        .filter(|inode| udp_inodes.contains(inode))
        .collect()
}

/// Wait for `client`'s next event that `pick` accepts.
async fn until<T>(client: &Client, mut pick: impl FnMut(Event) -> Option<T>) -> T {
    let wait = async {
        loop {
            match client.next_event().await {
                Some(ClientEvent::Session(event)) => {
                    if let Some(found) = pick(event) {
                        return found;
                    }
                }
                Some(ClientEvent::TransportChanged(_)) => {}
                None => panic!("the client stopped"),
            }
        }
    };
    timeout(LIMIT, wait).await.expect("the event in time")
}

#[tokio::test]
async fn clients_given_one_pool_share_its_udp_sockets() {
    let dir = tempfile::tempdir().unwrap();
    let server = TestServer::start(dir.path());
    let api = Api::new(&server.url()).unwrap();
    let token = api
        .signup("pia", "correct horse battery")
        .await
        .expect("signup")
        .token;
    let room = api.create_room(&token, "shared").await.expect("room").id;

    let before = udp_sockets();
    let pool = WtEndpoints::new(PER_ENDPOINT);
    let mut clients = Vec::new();
    for _ in 0..SESSIONS {
        let options = ClientOptions::new(server.url(), &token)
            .transport(TransportChoice::WebTransport)
            .api(api.clone())
            .wt_endpoints(pool.clone());
        let client = timeout(LIMIT, Client::connect(options))
            .await
            .expect("connected in time")
            .expect("connected");
        assert_eq!(client.transport(), Some(TransportKind::WebTransport));
        client.join(room);
        until(&client, |event| {
            matches!(event, Event::Joined { conversation, .. } if conversation == room)
                .then_some(())
        })
        .await;
        clients.push(client);
    }

    // 7 sessions at 3 per endpoint: 3 endpoints, 3 new UDP sockets in this process.
    assert_eq!(pool.endpoints(), SESSIONS.div_ceil(PER_ENDPOINT));
    let ports: HashSet<u16> = pool.local_addrs().iter().map(|a| a.port()).collect();
    assert_eq!(ports.len(), SESSIONS.div_ceil(PER_ENDPOINT), "{ports:?}");
    let opened: Vec<u64> = udp_sockets().difference(&before).copied().collect();
    assert_eq!(
        opened.len(),
        SESSIONS.div_ceil(PER_ENDPOINT),
        "UDP sockets opened: {opened:?}"
    );

    // Every session on the shared sockets hears a message sent on one of them.
    let id = clients[0].send(room, "over shared sockets");
    for client in &clients {
        let text = until(client, |event| match event {
            Event::Message(message) if message.client_id == id => Some(message.body),
            _ => None,
        })
        .await;
        assert_eq!(text, "over shared sockets");
    }
    for client in clients {
        client.close().await;
    }
}
