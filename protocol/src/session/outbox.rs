//! Unacknowledged sends.
/// A send that the server has not yet acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingSend {
    pub conversation: crate::wire::ConversationId,
    pub client_id: u64,
    pub body: String,
}
