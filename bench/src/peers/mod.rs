//! The peers of `quibble-bench versus`: the Node chat servers in `bench/peers/` (`ws` and
//! Socket.IO 4), the bots' links to them ([`ws`], [`socketio`], opened through [`dial`]), and starting and stopping a
//! server under test as a child process ([`process`]). The bots on these links are driven by
//! the same loop as Quibble's ([`crate::run::drive`]) and leave the same records.

mod chat_json;
mod dial;
pub mod process;
pub mod socketio;
mod socketio_packet;
pub mod ws;
