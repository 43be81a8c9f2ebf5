//! The bots' link to the Socket.IO 4 peer (`bench/peers/socketio-server.mjs`): one WebSocket
//! (tokio-tungstenite, Nagle off like Quibble's client) speaking Engine.IO v4 / Socket.IO v5
//! text packets ([`crate::peers::socketio_packet`]), straight over the WebSocket transport
//! (`/socket.io/?EIO=4&transport=websocket`, no HTTP long-polling first), as the official
//! client does with `transports: ["websocket"]`. A bot connects to the main namespace with its
//! user and room as the auth payload and is joined once the server's connect packet comes; each
//! send is an event `msg` whose ack id is the client id, answered by an ack; the room's
//! messages come as `msg` events. The server's pings are answered with pongs before the next
//! read.

use std::time::Instant;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::bot::{Bot, Link, Observed};
use crate::peers::chat_json::{Ack, Broadcast, Outgoing};
use crate::peers::dial::{self, Socket};
use crate::peers::socketio_packet::{self, Packet, SocketPacket};

/// The event the bots send and receive.
const EVENT: &str = "msg";

/// The answer to a `msg` event: the ack, or why the server refused the message.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum AckReply {
    Ack(Ack),
    Refused { error: String },
}

/// One bot's WebSocket to the Socket.IO peer.
#[derive(Debug)]
pub struct SocketIoLink {
    socket: Socket,
    /// The client id (and ack id) of the next send.
    next_id: u64,
    /// A ping came and its pong is not sent yet.
    pong_due: bool,
    /// The connection ended (and that was reported).
    gone: bool,
}

/// Connect bot `user` to the Socket.IO peer on `port` and join `room`.
pub async fn connect(port: u16, user: u64, room: u64) -> anyhow::Result<Bot<SocketIoLink>> {
    dial::bot(user, room, async move {
        Ok(SocketIoLink {
            socket: open(port, user, room).await?,
            next_id: 1,
            pong_due: false,
            gone: false,
        })
    })
    .await
}

async fn open(port: u16, user: u64, room: u64) -> anyhow::Result<Socket> {
    let url = format!("ws://127.0.0.1:{port}/socket.io/?EIO=4&transport=websocket");
    let mut socket = dial::socket(&url).await?;
    let mut opened = false;
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(Message::Close(frame))) => bail!("the server closed the socket: {frame:?}"),
            Some(Ok(_)) => continue,
            Some(Err(e)) => bail!("the socket failed while joining: {e}"),
            None => bail!("the socket ended while joining"),
        };
        match socketio_packet::decode(&text) {
            Ok(Packet::Open(_)) if !opened => {
                opened = true;
                let auth =
                    serde_json::json!({ "user": user.to_string(), "room": room.to_string() });
                socket
                    .send(Message::text(socketio_packet::connect(&auth.to_string())))
                    .await?;
            }
            Ok(Packet::Ping) => socket.send(Message::text(socketio_packet::PONG)).await?,
            Ok(Packet::Socket(SocketPacket::Connect(_))) if opened => return Ok(socket),
            Ok(Packet::Socket(SocketPacket::ConnectError(why))) => {
                bail!("the server refused the connection: {why}")
            }
            _ => bail!("unexpected while joining: {text}"),
        }
    }
}

impl SocketIoLink {
    /// What the record keeps of a text message from the server that came `at`, if anything.
    fn observe(&mut self, text: &str, at: Instant) -> Option<Observed> {
        let packet = match socketio_packet::decode(text) {
            Ok(packet) => packet,
            Err(e) => return Some(Observed::Error(format!("an undecodable packet: {e}"))),
        };
        match packet {
            Packet::Ping => {
                self.pong_due = true;
                None
            }
            Packet::Pong | Packet::Noop => None,
            Packet::Socket(SocketPacket::Ack { id, data }) => {
                Some(match serde_json::from_str::<(AckReply,)>(data) {
                    Ok((AckReply::Ack(ack),)) if ack.c == id => Observed::Acked(id, at),
                    Ok((AckReply::Ack(_),)) => {
                        Observed::Error("an ack whose client id is not its ack id".into())
                    }
                    Ok((AckReply::Refused { error },)) => {
                        Observed::Error(format!("server error: {error}"))
                    }
                    Err(e) => Observed::Error(format!("an unexpected ack: {e}")),
                })
            }
            Packet::Socket(SocketPacket::Event { data, .. }) => {
                Some(match serde_json::from_str::<(&str, Broadcast)>(data) {
                    Ok((name, message)) if name == EVENT => message.observed(at),
                    Ok((name, _)) => Observed::Error(format!("an unexpected event {name:?}")),
                    Err(e) => Observed::Error(format!("an unexpected event: {e}")),
                })
            }
            Packet::Close | Packet::Socket(SocketPacket::Disconnect) => {
                self.gone = true;
                Some(Observed::Cut("the server disconnected the socket".into()))
            }
            Packet::Open(_)
            | Packet::Upgrade
            | Packet::Socket(SocketPacket::Connect(_) | SocketPacket::ConnectError(_)) => {
                Some(Observed::Error(format!("an unexpected packet: {text}")))
            }
        }
    }
}

impl Link for SocketIoLink {
    async fn send(&mut self, text: String) -> anyhow::Result<u64> {
        let id = self.next_id;
        self.next_id += 1;
        let data = serde_json::to_string(&(EVENT, Outgoing { c: id, b: &text }))?;
        self.socket
            .send(Message::text(socketio_packet::event(id, &data)))
            .await?;
        Ok(id)
    }

    async fn next(&mut self) -> Option<Observed> {
        loop {
            if self.gone {
                return None;
            }
            if self.pong_due {
                // Queued first, then flushed: dropped during the flush, the pong stays queued
                // and goes out with the next write.
                let pong = self.socket.feed(Message::text(socketio_packet::PONG)).await;
                self.pong_due = pong.is_err();
                if let Err(e) = pong.and(self.socket.flush().await) {
                    self.gone = true;
                    return Some(Observed::Cut(format!("the socket failed: {e}")));
                }
            }
            let message = self.socket.next().await;
            let at = Instant::now();
            match message {
                Some(Ok(Message::Text(text))) => {
                    if let Some(observed) = self.observe(&text, at) {
                        return Some(observed);
                    }
                }
                Some(Ok(Message::Close(_))) | None => {
                    self.gone = true;
                    return Some(Observed::Cut("the server closed the socket".into()));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    self.gone = true;
                    return Some(Observed::Cut(format!("the socket failed: {e}")));
                }
            }
        }
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
