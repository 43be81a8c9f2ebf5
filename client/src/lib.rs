//! Native Quibble client: a REST client for accounts, rooms, friends, DMs, blocks, the
//! conversation list and moderation ([`Api`]) and a realtime
//! [`Client`] that drives the protocol's sans-IO session over WebTransport (wtransport) or a
//! WebSocket fallback, reconnecting and resuming by itself ([`Http3Api`] reaches the API over
//! HTTP/3). An `https://` server is reached over HTTPS, WSS and WebTransport, all verified
//! with one set of trusted certificates ([`TlsRoots`]: the system's roots plus an optional CA
//! file).
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use quibble_client::{Api, Client, ClientEvent, ClientOptions, Event};
//!
//! let api = Api::new("http://127.0.0.1:4433")?;
//! let login = api.login("alice", "correct horse").await?;
//! let room = api.rooms(&login.token).await?.into_iter().next().ok_or("no rooms")?;
//! let client = Client::connect(ClientOptions::new("http://127.0.0.1:4433", login.token)).await?;
//! client.join(room.id);
//! let id = client.send(room.id, "hello");
//! while let Some(event) = client.next_event().await {
//!     if let ClientEvent::Session(Event::Sent { client_id, seq, .. }) = event {
//!         if client_id == id {
//!             println!("sent as #{seq}");
//!             break;
//!         }
//!     }
//! }
//! client.close().await;
//! # Ok(())
//! # }
//! ```

mod admin;
mod api;
mod blocks;
mod client;
mod driver;
mod endpoints;
mod error;
mod http3;
mod social;
mod tls;
mod transport;

pub use admin::{AuditEntry, AuditPage, Ban, IpBan, IpBanRemoved, NewSession, Unbanned, UserBrief};
pub use api::{Api, CertInfo, DeletedMessage, Login, Role, Room, RoomPage, User};
pub use client::{Client, ClientEvent, ClientOptions};
pub use endpoints::ServerUrl;
pub use error::{ApiError, ClientError, InvalidUrl, TransportError};
pub use http3::{Http3Api, Http3Error, Http3Response};
pub use social::{
    Conversation, ConversationPage, Dm, Friend, FriendChange, FriendOutcome, Friends, Kind, Last,
    MAX_CONVERSATION_PAGE, Membership, Peer,
};
pub use tls::{TlsError, TlsRoots};
pub use transport::wt_endpoints::WtEndpoints;
pub use transport::{TransportChoice, TransportKind};

pub use blocks::{Block, BlockChange, BlockedUser};

pub use quibble_protocol as protocol;
pub use quibble_protocol::session::Event;
pub use quibble_protocol::{
    ChatMessage, ConversationId, ConversationKind, ConversationSummary, ErrorCode, FriendStatus,
    LastMessage, UserId,
};
