//! The bots' link to the `ws` peer (`bench/peers/ws-server.mjs`): one WebSocket
//! (tokio-tungstenite, Nagle off like Quibble's client) carrying JSON text messages. A bot
//! names its user and room in the query string and is joined once the server says
//! `{"t":"joined"}`; then each send is one text message, and every text message from the
//! server is an ack, a message of the room or an error.

use std::borrow::Cow;
use std::time::Instant;

use anyhow::bail;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use serde::de::IgnoredAny;
use tokio_tungstenite::tungstenite::Message;

use crate::bot::{Bot, Link, Observed};
use crate::peers::chat_json::{self, Outgoing};
use crate::peers::dial::{self, Socket};

/// A text message from the server: `t` names the kind, and which other fields it must carry
/// ([`FromServer::observed`]). Read flat rather than as a `t`-tagged enum: serde buffers an
/// internally tagged enum's fields (allocating for each) before it can pick the variant, and a
/// delivery is read by every member, so reading one must allocate nothing.
#[derive(Debug, Deserialize)]
struct FromServer<'a> {
    #[serde(borrow)]
    t: Cow<'a, str>,
    c: Option<u64>,
    #[serde(borrow)]
    r: Option<Cow<'a, str>>,
    #[serde(borrow)]
    a: Option<Cow<'a, str>>,
    s: Option<IgnoredAny>,
    b: Option<IgnoredAny>,
    #[serde(borrow)]
    reason: Option<Cow<'a, str>>,
}

impl FromServer<'_> {
    /// What the record keeps of it, which came `at`.
    fn observed(self, at: Instant) -> Observed {
        match (&*self.t, self.c, self.s, self.r, self.a, self.b) {
            ("ack", Some(c), Some(_), ..) => Observed::Acked(c, at),
            ("msg", Some(c), Some(_), Some(room), Some(author), Some(_)) => {
                chat_json::arrival(&room, &author, c, at)
            }
            ("error", ..) => match self.reason {
                Some(reason) => Observed::Error(format!("server error: {reason}")),
                None => Observed::Error("an error without a reason".into()),
            },
            ("joined", ..) => Observed::Error("joined twice".into()),
            (kind, ..) => Observed::Error(format!(
                "an unexpected message from the server: {kind:?} or a field missing"
            )),
        }
    }
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
            Some(Ok(Message::Text(text))) => match serde_json::from_str::<FromServer>(&text) {
                Ok(message) if message.t == "joined" => return Ok(socket),
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
            return Some(match serde_json::from_str::<FromServer>(&text) {
                Ok(message) => message.observed(at),
                Err(e) => Observed::Error(format!("an unexpected message from the server: {e}")),
            });
        }
    }

    async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

#[cfg(test)]
mod tests {
    use quibble_client::{ConversationId, UserId};

    use super::*;

    fn observed(json: &str) -> Observed {
        serde_json::from_str::<FromServer>(json)
            .unwrap()
            .observed(Instant::now())
    }

    #[test]
    fn frames_map_onto_what_the_record_keeps() {
        assert!(matches!(
            observed(r#"{"t":"ack","c":5,"s":9}"#),
            Observed::Acked(5, _)
        ));
        match observed(r#"{"t":"msg","r":"3","a":"17","c":5,"s":9,"b":"hi"}"#) {
            Observed::Arrival(arrival) => {
                assert_eq!(arrival.conversation, ConversationId(3));
                assert_eq!(arrival.key, (UserId(17), 5));
            }
            other => panic!("{other:?}"),
        }
        // A field missing, an unknown kind, a second `joined`: errors, not arrivals.
        for json in [
            r#"{"t":"msg","r":"3","a":"17","c":5,"s":9}"#,
            r#"{"t":"ack","c":5}"#,
            r#"{"t":"what","c":5}"#,
            r#"{"t":"joined","r":"3"}"#,
        ] {
            assert!(matches!(observed(json), Observed::Error(_)), "{json}");
        }
        match observed(r#"{"t":"error","reason":"too \"big\""}"#) {
            Observed::Error(what) => assert_eq!(what, "server error: too \"big\""),
            other => panic!("{other:?}"),
        }
    }
}
