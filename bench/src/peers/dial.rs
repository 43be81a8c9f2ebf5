//! What the peers' links share to get a bot going: the bot's WebSocket (tokio-tungstenite, Nagle
//! off like Quibble's client), and a link opened and joined within [`JOIN_LIMIT`] made into a
//! bot, with its connect+join time measured like Quibble's bots'.

use std::future::Future;
use std::time::{Duration, Instant};

use anyhow::Context;
use quibble_client::{ConversationId, UserId};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async_with_config};

use crate::bot::{Bot, Link};

/// How long connecting and joining may take.
const JOIN_LIMIT: Duration = Duration::from_secs(10);

/// A bot's read buffer: tungstenite zero-fills its free capacity before every read, and its
/// default 128 KiB made that memset 15–19 % of the bench's CPU (as Quibble's client's).
const READ_BUFFER: usize = 16 * 1024;

/// A bot's WebSocket to a peer.
pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Open the WebSocket at `url`.
pub async fn socket(url: &str) -> anyhow::Result<Socket> {
    let config = WebSocketConfig::default().read_buffer_size(READ_BUFFER);
    let (socket, _response) = connect_async_with_config(url, Some(config), true)
        .await
        .with_context(|| format!("cannot open {url}"))?;
    Ok(socket)
}

/// Bot `user` in `room` on the link `join` opens and joins, within [`JOIN_LIMIT`].
pub async fn bot<L: Link>(
    user: u64,
    room: u64,
    join: impl Future<Output = anyhow::Result<L>>,
) -> anyhow::Result<Bot<L>> {
    let started = Instant::now();
    let link = tokio::time::timeout(JOIN_LIMIT, join)
        .await
        .with_context(|| format!("not joined within {JOIN_LIMIT:?}"))??;
    Ok(Bot::new(
        link,
        UserId(user),
        ConversationId(room),
        started.elapsed(),
    ))
}
