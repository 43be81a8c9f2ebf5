//! The QUIC transport settings of the WebTransport endpoint, chosen for chat (many small frames
//! on a handful of streams per session, thousands of mostly idle sessions), and the stream
//! credit a session is given as it opens streams ([`StreamCredit`]).
//!
//! Memory: quinn keeps a table entry for every stream the peer may open, from the moment the
//! connection starts, so the limit on client-opened bidirectional streams is memory per idle
//! session (the engine's 64 conversations made ~5.4 KB of an idle session). A session
//! therefore starts with room for [`INITIAL_BIDI`] streams (the HTTP/3 CONNECT stream, the
//! control stream and two conversations), and its limit doubles, up to what the engine
//! allows, as its streams are accepted: a client opening many conversations at once waits a
//! round trip for the next credit (QUIC's MAX_STREAMS), an idle one never pays for them.
//!
//! Packets: after the handshake quinn searches the path MTU by binary search between 1,200
//! and 1,452 bytes, five padded probes each way and their acknowledgements, more datagrams
//! than the whole session setup otherwise takes. Chat frames are small, so each side probes
//! only the largest size once ([`mtu_discovery`]): a path that carries it gets it, any other
//! stays at QUIC's 1,200 bytes.

use std::time::Duration;

use wtransport::quinn::{MtuDiscoveryConfig, TransportConfig, VarInt};

/// Client-opened bidirectional streams a session may have at first: the HTTP/3 CONNECT
/// stream, the control stream and two conversations.
pub const INITIAL_BIDI: u32 = 4;
/// Streams of credit kept ahead of those accepted before the limit is raised.
const HEADROOM: u32 = 1;
/// Unidirectional streams: clients open three (HTTP/3 control and two QPACK streams) and
/// Quibble uses none of its own (quinn's default of 100 cost ~2 KB more per session).
const UNI: u32 = 8;
/// The largest UDP payload probed, quinn's default (a 1,500-byte Ethernet MTU over IPv6).
const MTU_UPPER_BOUND: u16 = 1452;

/// The transport configuration of every WebTransport session; `max_streams` is the engine's
/// limit on a connection's conversation streams.
pub fn config(max_streams: usize) -> TransportConfig {
    let mut t = TransportConfig::default();
    // A connection silent for 30 s is dead; clients ping every 10 s anyway.
    t.max_idle_timeout(Some(VarInt::from_u32(30_000).into()));
    // Keep NAT bindings alive from our side too.
    t.keep_alive_interval(Some(Duration::from_secs(10)));
    t.max_concurrent_bidi_streams(VarInt::from_u32(
        INITIAL_BIDI.min(bidi_ceiling(max_streams)),
    ));
    // The handshake failures once blamed on this limit are wtransport's SETTINGS race (see the
    // client's `transport::wt`); they come as often with any limit.
    t.max_concurrent_uni_streams(VarInt::from_u32(UNI));
    // Per-stream window fits a full history page frame; the connection window bounds memory.
    t.stream_receive_window(VarInt::from_u32(512 * 1024));
    t.receive_window(VarInt::from_u32(4 * 1024 * 1024));
    // Bytes quinn holds written but unacknowledged, per session: on top of the engine's
    // outbound queue, so kept small (chat needs little; 1 MiB is 20 MB/s at 50 ms RTT).
    t.send_window(1024 * 1024);
    t.mtu_discovery_config(Some(mtu_discovery()));
    t
}

/// Probe [`MTU_UPPER_BOUND`] once, and nothing between it and 1,200 bytes: quinn's binary
/// search stops when the next step is under `minimum_change`, but first tries the upper bound
/// if that is at least `minimum_change` away.
pub fn mtu_discovery() -> MtuDiscoveryConfig {
    let mut mtu = MtuDiscoveryConfig::default();
    mtu.upper_bound(MTU_UPPER_BOUND).minimum_change(200);
    mtu
}

/// The most client-opened bidirectional streams a session may have at once: the CONNECT
/// stream, the control stream and `max_streams` conversations.
fn bidi_ceiling(max_streams: usize) -> u32 {
    u32::try_from(max_streams.saturating_add(2)).unwrap_or(u32::MAX)
}

/// A session's limit on client-opened bidirectional streams, raised as they are accepted.
#[derive(Debug)]
pub struct StreamCredit {
    limit: u32,
    ceiling: u32,
    /// Streams accepted so far (the control stream and conversations; not CONNECT).
    accepted: u32,
}

impl StreamCredit {
    /// The credit of a new session, under the engine's `max_streams`.
    pub fn new(max_streams: usize) -> StreamCredit {
        let ceiling = bidi_ceiling(max_streams);
        StreamCredit {
            limit: INITIAL_BIDI.min(ceiling),
            ceiling,
            accepted: 0,
        }
    }

    /// One more stream was accepted; returns the new limit when it should be raised. Counts
    /// every stream the session ever opened (quinn gives an ended stream's credit back by
    /// itself), so a session that opened many keeps the larger table, as every session did
    /// before.
    pub fn accepted(&mut self) -> Option<u32> {
        self.accepted = self.accepted.saturating_add(1);
        // The CONNECT stream counts against the limit too.
        let wanted = self.accepted.saturating_add(1 + HEADROOM);
        if wanted <= self.limit || self.limit >= self.ceiling {
            return None;
        }
        self.limit = self.limit.saturating_mul(2).max(wanted).min(self.ceiling);
        Some(self.limit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_doubles_ahead_of_the_streams_up_to_the_engines() {
        let mut credit = StreamCredit::new(64);
        let raises: Vec<(u32, u32)> = (1..=100)
            .filter_map(|n| credit.accepted().map(|limit| (n, limit)))
            .collect();
        // Control stream and the first conversation fit in the initial 4 (with CONNECT); each
        // raise comes when the credit left is down to the headroom.
        assert_eq!(raises, [(3, 8), (7, 16), (15, 32), (31, 64), (63, 66)]);
    }

    #[test]
    fn a_small_engine_limit_caps_the_first_credit_too() {
        let mut credit = StreamCredit::new(1);
        assert_eq!(credit.limit, 3);
        assert_eq!((1..=10).find_map(|_| credit.accepted()), None);
    }

    /// A real session on loopback (MTU 65,536) with these settings on both sides: the server
    /// sends one MTU probe, of the upper bound, and uses it; a client opens more streams than
    /// the initial credit, all at once, and the server accepts every one.
    #[tokio::test]
    async fn one_mtu_probe_and_streams_beyond_the_initial_credit() {
        use wtransport::tls::Sha256Digest;
        use wtransport::{ClientConfig, Endpoint, ServerConfig};

        let certs = crate::tls::Certificates::load(None, vec!["localhost".into()]).unwrap();
        let hex = certs.info().sha256_hex;
        let bytes: Vec<u8> = (0..32)
            .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
            .collect();
        let hash = Sha256Digest::new(bytes.try_into().unwrap());
        let server = Endpoint::server(
            ServerConfig::builder()
                .with_bind_address("127.0.0.1:0".parse().unwrap())
                .with_custom_tls_and_transport(
                    super::super::quic_tls::config(std::sync::Arc::new(certs)).unwrap(),
                    config(64),
                )
                .build(),
        )
        .unwrap();
        let port = server.local_addr().unwrap().port();
        let mut client = ClientConfig::builder()
            .with_bind_default()
            .with_server_certificate_hashes([hash])
            .build();
        let mut transport = TransportConfig::default();
        transport.mtu_discovery_config(Some(mtu_discovery()));
        client
            .quic_config_mut()
            .transport_config(std::sync::Arc::new(transport));
        let client = Endpoint::client(client).unwrap();
        let accepting = tokio::spawn(async move {
            let session = server.accept().await.await.unwrap().accept().await.unwrap();
            let mut credit = StreamCredit::new(64);
            let mut streams = Vec::new();
            for _ in 0..12 {
                let stream = session.accept_bi().await.unwrap();
                if let Some(limit) = credit.accepted() {
                    session
                        .quic_connection()
                        .set_max_concurrent_bi_streams(VarInt::from_u32(limit));
                }
                streams.push(stream);
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
            (session.quic_connection().stats().path, streams)
        });
        let session = client
            .connect(format!("https://localhost:{port}/"))
            .await
            .unwrap();
        let opening = async {
            let mut opened = Vec::new();
            for _ in 0..12 {
                let (mut send, recv) = session.open_bi().await.unwrap().await.unwrap();
                // wtransport announces a stream to the server with its first bytes.
                send.write_all(b"x").await.unwrap();
                opened.push((send, recv));
            }
            (opened, accepting.await.unwrap())
        };
        let (_opened, (path, streams)) = tokio::time::timeout(Duration::from_secs(10), opening)
            .await
            .expect("every stream opened and accepted in time");
        assert_eq!(streams.len(), 12);
        assert_eq!(path.sent_plpmtud_probes, 1, "{path:?}");
        assert_eq!(path.current_mtu, MTU_UPPER_BOUND, "{path:?}");
    }
}
