//! The few Engine.IO v4 and Socket.IO v5 packets the bots' Socket.IO link speaks, as text
//! WebSocket messages: Engine.IO's open (`0{...}`), close (`1`), ping (`2`) and pong (`3`),
//! and inside its message packet (`4`) the Socket.IO packets connect (`40{auth}` / `40{sid}`),
//! disconnect (`41`), event (`42[name, data]`, with an ack id before the JSON: `42N[...]`),
//! ack (`43N[...]`) and connect error (`44{...}`). A Socket.IO packet is
//! `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`; only the main namespace and text
//! packets are used, so a namespace other than `/` and the binary packet types are errors. The
//! JSON is handed back as text for the caller to decode with serde.

use thiserror::Error;

/// Engine.IO's pong, the answer to its ping.
pub const PONG: &str = "3";

/// An Engine.IO packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packet<'a> {
    /// The handshake: session id, ping interval and timeout (JSON).
    Open(&'a str),
    Close,
    Ping,
    Pong,
    /// A Socket.IO packet (Engine.IO's message).
    Socket(SocketPacket<'a>),
    Upgrade,
    Noop,
}

/// A Socket.IO packet of the main namespace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SocketPacket<'a> {
    /// Connected (the JSON, possibly empty, holds the socket id).
    Connect(&'a str),
    Disconnect,
    /// An event: a JSON array `[name, args…]`, and the ack id the sender wants answered.
    Event {
        ack: Option<u64>,
        data: &'a str,
    },
    /// The answer to the event with this ack id: a JSON array of its arguments.
    Ack {
        id: u64,
        data: &'a str,
    },
    /// The connection was refused (JSON, usually `{"message": …}`).
    ConnectError(&'a str),
}

/// Why a text is not a packet this link understands.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PacketError {
    #[error("an empty packet")]
    Empty,
    #[error("unknown Engine.IO packet type {0:?}")]
    EngineType(char),
    #[error("unknown Socket.IO packet type {0:?}")]
    SocketType(char),
    #[error("binary Socket.IO packets are not used here")]
    Binary,
    #[error("namespace {0:?}: only the main namespace is used here")]
    Namespace(String),
    #[error("a namespace without the comma that ends it")]
    UnendedNamespace,
    #[error("an acknowledgement without an ack id")]
    AckWithoutId,
    #[error("ack id {0} is too large")]
    AckIdTooLarge(String),
}

/// Decode one text WebSocket message.
pub fn decode(text: &str) -> Result<Packet<'_>, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let rest = chars.as_str();
    Ok(match kind {
        '0' => Packet::Open(rest),
        '1' => Packet::Close,
        '2' => Packet::Ping,
        '3' => Packet::Pong,
        '4' => Packet::Socket(decode_socket(rest)?),
        '5' => Packet::Upgrade,
        '6' => Packet::Noop,
        other => return Err(PacketError::EngineType(other)),
    })
}

fn decode_socket(text: &str) -> Result<SocketPacket<'_>, PacketError> {
    let mut chars = text.chars();
    let kind = chars.next().ok_or(PacketError::Empty)?;
    let rest = main_namespace(chars.as_str())?;
    Ok(match kind {
        '0' => SocketPacket::Connect(rest),
        '1' => SocketPacket::Disconnect,
        '2' => {
            let (ack, data) = ack_id(rest)?;
            SocketPacket::Event { ack, data }
        }
        '3' => match ack_id(rest)? {
            (Some(id), data) => SocketPacket::Ack { id, data },
            (None, _) => return Err(PacketError::AckWithoutId),
        },
        '4' => SocketPacket::ConnectError(rest),
        '5' | '6' => return Err(PacketError::Binary),
        other => return Err(PacketError::SocketType(other)),
    })
}

/// What follows the namespace, which must be the main one (`/`, usually left out).
fn main_namespace(text: &str) -> Result<&str, PacketError> {
    if !text.starts_with('/') {
        return Ok(text);
    }
    let (namespace, rest) = text.split_once(',').ok_or(PacketError::UnendedNamespace)?;
    if namespace != "/" {
        return Err(PacketError::Namespace(namespace.to_owned()));
    }
    Ok(rest)
}

/// The ack id at the start of `text` (digits), if any, and the JSON after it.
fn ack_id(text: &str) -> Result<(Option<u64>, &str), PacketError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 {
        return Ok((None, text));
    }
    let (id, data) = text.split_at(digits);
    let id = id
        .parse()
        .map_err(|_| PacketError::AckIdTooLarge(id.to_owned()))?;
    Ok((Some(id), data))
}

/// Connect to the main namespace with `auth` (a JSON object).
pub fn connect(auth: &str) -> String {
    format!("40{auth}")
}

/// An event whose answer is wanted under `ack`: `data` is the JSON array `[name, args…]`.
pub fn event(ack: u64, data: &str) -> String {
    format!("42{ack}{data}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_the_engine_io_packets() {
        let open = r#"0{"sid":"abc","upgrades":[],"pingInterval":25000,"pingTimeout":20000}"#;
        assert_eq!(decode(open), Ok(Packet::Open(&open[1..])));
        assert_eq!(decode("1"), Ok(Packet::Close));
        assert_eq!(decode("2"), Ok(Packet::Ping));
        assert_eq!(decode("3"), Ok(Packet::Pong));
        assert_eq!(decode("5"), Ok(Packet::Upgrade));
        assert_eq!(decode("6"), Ok(Packet::Noop));
        assert_eq!(decode(""), Err(PacketError::Empty));
        assert_eq!(decode("7"), Err(PacketError::EngineType('7')));
        assert_eq!(decode("é"), Err(PacketError::EngineType('é')));
    }

    #[test]
    fn decodes_the_socket_io_packets() {
        let socket = |text| match decode(text) {
            Ok(Packet::Socket(packet)) => Ok(packet),
            Ok(other) => panic!("{text}: {other:?}"),
            Err(e) => Err(e),
        };
        assert_eq!(
            socket(r#"40{"sid":"x"}"#),
            Ok(SocketPacket::Connect(r#"{"sid":"x"}"#))
        );
        assert_eq!(socket("40"), Ok(SocketPacket::Connect("")));
        assert_eq!(socket("41"), Ok(SocketPacket::Disconnect));
        assert_eq!(
            socket(r#"42["msg",{"c":1}]"#),
            Ok(SocketPacket::Event {
                ack: None,
                data: r#"["msg",{"c":1}]"#
            })
        );
        assert_eq!(
            socket(r#"4217["msg",{"c":1}]"#),
            Ok(SocketPacket::Event {
                ack: Some(17),
                data: r#"["msg",{"c":1}]"#
            })
        );
        assert_eq!(
            socket(r#"43123[{"c":123,"s":4}]"#),
            Ok(SocketPacket::Ack {
                id: 123,
                data: r#"[{"c":123,"s":4}]"#
            })
        );
        assert_eq!(
            socket(r#"44{"message":"no"}"#),
            Ok(SocketPacket::ConnectError(r#"{"message":"no"}"#))
        );
        // The main namespace may be spelled out; no other is used.
        assert_eq!(
            socket(r#"42/,["msg"]"#),
            Ok(SocketPacket::Event {
                ack: None,
                data: r#"["msg"]"#
            })
        );
        assert_eq!(
            socket(r#"42/admin,["msg"]"#),
            Err(PacketError::Namespace("/admin".into()))
        );
        assert_eq!(socket("42/admin"), Err(PacketError::UnendedNamespace));
        assert_eq!(socket("43[]"), Err(PacketError::AckWithoutId));
        assert_eq!(
            socket("4399999999999999999999[]"),
            Err(PacketError::AckIdTooLarge("99999999999999999999".into()))
        );
        assert_eq!(socket(r#"451-["msg",{}]"#), Err(PacketError::Binary));
        assert_eq!(socket("46"), Err(PacketError::Binary));
        assert_eq!(socket("49"), Err(PacketError::SocketType('9')));
        assert_eq!(socket("4"), Err(PacketError::Empty));
    }

    #[test]
    fn encodes_what_the_bots_send() {
        assert_eq!(
            connect(r#"{"user":"1","room":"0"}"#),
            r#"40{"user":"1","room":"0"}"#
        );
        assert_eq!(
            event(7, r#"["msg",{"c":7,"b":"hi"}]"#),
            r#"427["msg",{"c":7,"b":"hi"}]"#
        );
        // What the bots send decodes back to itself.
        let sent = event(7, r#"["msg",{"c":7}]"#);
        assert_eq!(
            decode(&sent),
            Ok(Packet::Socket(SocketPacket::Event {
                ack: Some(7),
                data: r#"["msg",{"c":7}]"#
            }))
        );
        assert_eq!(decode(PONG), Ok(Packet::Pong));
    }
}
