//! The chat engine, independent of transports: a connection's control stream
//! ([`connection`]), its conversation streams ([`conversation`]), fan-out ([`hub`]), per-user
//! events ([`users`]: the conversation list, friends, receipts, presence) and [`typing`], the
//! byte-bounded outbound queue every stream writes into ([`outbound`]) and the peer's
//! liveness ([`liveness`]); [`congestion`] refuses sends into a conversation whose readers
//! are mostly behind. Transports adapt their sockets to [`stream::StreamIo`] and call
//! [`connection::serve`].

pub mod congestion;
pub mod connection;
pub mod conversation;
pub mod hub;
pub mod liveness;
pub mod outbound;
pub mod send_limit;
pub mod send_order;
pub mod stream;
pub mod typing;
pub mod users;
// store: a commit's messages, fanned out at once.
pub mod committed;
// idle (issue 9): the hand-off channel and the server-wide heartbeat sweep.
pub mod handoff;
pub mod heartbeat;
pub mod keyed_vec;
pub mod remote_presence;
pub mod stream_set;
