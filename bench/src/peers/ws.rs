//! The bots' link to the `ws` peer (`bench/peers/ws-server.mjs`): one WebSocket
//! (tokio-tungstenite, Nagle off like Quibble's client) carrying JSON text messages. A bot
//! names its user and room in the query string and is joined once the server says
//! `{"t":"joined"}`; then each send is one text message, and every text message from the
//! server is an ack, a message of the room or an error.

use std::time::Instant;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::bot::{Bot, Link, Observed};
use crate::peers::chat_json::{Ack, Broadcast, Outgoing};
use crate::peers::dial::{self, Socket};

/// A text message from the server.
#[derive(Debug, Deserialize)]
#[serde(tag = "t", rename_all = "lowercase")]
enum FromServer {
    Joined,
    Ack(Ack),
    Msg(Broadcast),
    Error { reason: String },
}

/// One bot's WebSocket to the `ws` peer.
#[derive(Debug)]
pub struct WsLink {
    socket: Socket,
    /// The client id of the next send.
    next_id: u64,
    /// The connection ended (and that was reported).
    gone: bool,
}

/// Connect bot `user` to the `ws` peer on `port` and join `room`.
pub async fn connect(port: u16, user: u64, room: u64) -> anyhow::Result<Bot<WsLink>> {
    dial::bot(user, room, async move {
        Ok(WsLink {
            socket: open(port, user, room).await?,
            next_id: 1,
            gone: false,
        })
    })
    .await
}

async fn open(port: u16, user: u64, room: u64) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/?user={user}&room={room}");
    let mut socket = dial::socket(&url).await?;
    loop {
        match socket.next().await {
            Some(Ok(Message::Text(text))) => match serde_json::from_str(&text) {
                Ok(FromServer::Joined) => return Ok(socket),
                _ => bail!("expected {{\"t\":\"joined\"}}, got {text}"),
            },
            Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("the socket failed while joining: {e}"),
            None => bail!("the socket ended while joining"),
        }
    }
}

impl Link for WsLink {
    async fn send(&mut self, text: String) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let json = serde_json::to_string(&Outgoing { c: id, b: &text })?;
        self.socket.send(Message::text(json)).await?;
        Ok(id)
    }

    async fn next(&mut self) -> Option<Observed> {
        if self.gone {
            return None;
        }
        loop {
            let message = self.socket.next().await;
            let at = Instant::now();
            let text = match message {
                Some(Ok(Message::Text(text))) => text,
                Some(Ok(Message::Close(_))) | None => {
                    self.gone = true;
                    return Some(Observed::Cut("the server closed the socket".into()));
                }
                Some(Ok(_)) => continue,
                Some(Err(e)) => {
                    self.gone = true;
                    return Some(Observed::Cut(format!("the socket failed: {e}")));
                }
            };
            return Some(match serde_json::from_str(&text) {
                Ok(FromServer::Ack(ack)) => Observed::Acked(ack.c, at),
                Ok(FromServer::Msg(message)) => message.observed(at),
                Ok(FromServer::Error { reason }) => {
                    Observed::Error(format!("server error: {reason}"))
                }
                Ok(FromServer::Joined) => Observed::Error("joined twice".into()),
                Err(e) => Observed::Error(format!("an unexpected message from the server: {e}")),
            });
        }
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
