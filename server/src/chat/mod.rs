//! The chat engine, independent of transports: a connection's control stream
//! ([`connection`]), its conversation streams ([`conversation`]), and fan-out ([`hub`]).
//! Transports adapt their sockets to [`stream::StreamIo`] and call [`connection::serve`].

pub mod connection;
pub mod conversation;
pub mod hub;
pub mod send_limit;
pub mod stream;
