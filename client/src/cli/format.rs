//! How `quibble-chat` prints things: tab-separated lines for scripts (with message text escaped
//! so that one message is always one line), lines for people, and looking rooms up by name.

use std::fmt::Write;

use quibble_client::{ChatMessage, Conversation, FriendOutcome, Kind, Room};

/// Text safe for one tab-separated field: backslash, tab, newline, carriage return and other
/// control characters are written as escapes (`\\`, `\t`, `\n`, `\r`, `\u{7f}`).
pub fn escape_field(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// `ID<TAB>NAME<TAB>HEAD_SEQ`
pub fn room_line(room: &Room) -> String {
    format!(
        "{}\t{}\t{}",
        room.id.0,
        escape_field(&room.name),
        room.head_seq
    )
}

/// `ID<TAB>NAME`
pub fn created_room_line(room: &Room) -> String {
    format!("{}\t{}", room.id.0, escape_field(&room.name))
}

/// What a deleted message (a tombstone) shows instead of its text.
pub const DELETED_TEXT: &str = "(message deleted)";

/// What a message shows as its text: the body, [`DELETED_TEXT`] for a tombstone, or
/// [`HIDDEN`] for a hidden marker.
pub fn message_text(message: &ChatMessage) -> &str {
    if message.is_deleted() {
        DELETED_TEXT
    } else if message.is_hidden() {
        HIDDEN
    } else {
        &message.body
    }
}

/// `SEQ<TAB>AUTHOR<TAB>TEXT` (a hidden marker: empty author, [`HIDDEN`]).
pub fn history_line(message: &ChatMessage) -> String {
    format!(
        "{}\t{}\t{}",
        message.seq,
        escape_field(&message.author_name),
        escape_field(message_text(message))
    )
}

/// `AUTHOR<TAB>TEXT` (a hidden marker: empty author, [`HIDDEN`]).
pub fn tail_line(message: &ChatMessage) -> String {
    format!(
        "{}\t{}",
        escape_field(&message.author_name),
        escape_field(message_text(message))
    )
}

/// What stands for the message of a user the reader blocks (a hidden marker).
pub const HIDDEN: &str = "(hidden: blocked user)";

/// `ID<TAB>room|dm<TAB>TITLE<TAB>UNREAD`
pub fn conversation_line(conversation: &Conversation) -> String {
    let kind = match conversation.kind {
        Kind::Room => "room",
        Kind::Dm => "dm",
        Kind::Other => "other",
    };
    format!(
        "{}\t{kind}\t{}\t{}",
        conversation.id.0,
        escape_field(&conversation.title),
        conversation.unread
    )
}

/// The API's word for what an add or remove did.
pub fn friend_outcome(outcome: FriendOutcome) -> &'static str {
    match outcome {
        FriendOutcome::Requested => "requested",
        FriendOutcome::AlreadyRequested => "already_requested",
        FriendOutcome::Accepted => "accepted",
        FriendOutcome::AlreadyFriends => "already_friends",
        FriendOutcome::Declined => "declined",
        FriendOutcome::Cancelled => "cancelled",
        FriendOutcome::Unfriended => "unfriended",
        FriendOutcome::Nothing => "nothing",
        FriendOutcome::Other => "other",
    }
}

/// A message for a person: `#SEQ AUTHOR: TEXT`; a hidden marker collapsed to `#SEQ` and
/// [`HIDDEN`].
pub fn chat_line(message: &ChatMessage) -> String {
    if message.is_hidden() {
        return format!("#{} {HIDDEN}", message.seq);
    }
    format!(
        "#{} {}: {}",
        message.seq,
        message.author_name,
        one_line(message_text(message))
    )
}

/// Text on one line for a person (line breaks shown as `⏎`, other control characters dropped).
pub fn one_line(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\n' => Some('⏎'),
            '\t' => Some(' '),
            c if c.is_control() => None,
            c => Some(c),
        })
        .collect()
}

/// A room by name, compared case-insensitively (as the server compares names).
pub fn find_room<'a>(rooms: &'a [Room], name: &str) -> Option<&'a Room> {
    let wanted = name.trim().to_lowercase();
    rooms.iter().find(|room| room.name.to_lowercase() == wanted)
}

#[cfg(test)]
mod tests {
    use quibble_client::{ConversationId, UserId};

    use super::*;

    fn message(seq: u64, author: &str, body: &str) -> ChatMessage {
        ChatMessage {
            conversation: ConversationId(1),
            seq,
            author: UserId(2),
            author_name: author.into(),
            client_id: 3,
            sent_at_ms: 4,
            body: body.into(),
        }
    }

    fn room(id: u64, name: &str) -> Room {
        Room {
            id: ConversationId(id),
            name: name.into(),
            created_at_ms: 0,
            head_seq: 7,
            member: false,
        }
    }

    #[test]
    fn fields_never_break_lines_or_columns() {
        assert_eq!(
            escape_field("plain text, ünïcode ✓"),
            "plain text, ünïcode ✓"
        );
        assert_eq!(escape_field("a\tb\nc\r\\d"), "a\\tb\\nc\\r\\\\d");
        assert_eq!(escape_field("bell\u{7}"), "bell\\u{7}");
    }

    #[test]
    fn script_lines() {
        let m = message(12, "ann", "hi\tthere");
        assert_eq!(history_line(&m), "12\tann\thi\\tthere");
        assert_eq!(tail_line(&m), "ann\thi\\tthere");
        assert_eq!(room_line(&room(5, "General")), "5\tGeneral\t7");
        assert_eq!(created_room_line(&room(5, "General")), "5\tGeneral");
    }

    #[test]
    fn hidden_markers_are_collapsed() {
        let hidden = message(9, "bob", "secret").hidden();
        assert_eq!(history_line(&hidden), "9\t\t(hidden: blocked user)");
        assert_eq!(tail_line(&hidden), "\t(hidden: blocked user)");
        assert_eq!(chat_line(&hidden), "#9 (hidden: blocked user)");
    }

    #[test]
    fn lines_for_people() {
        assert_eq!(
            chat_line(&message(3, "bob", "two\nlines\u{7}")),
            "#3 bob: two⏎lines"
        );
    }

    #[test]
    fn rooms_are_found_case_insensitively() {
        let rooms = [room(1, "General"), room(2, "Ünïcode")];
        assert_eq!(find_room(&rooms, "general").map(|r| r.id.0), Some(1));
        assert_eq!(find_room(&rooms, " GENERAL ").map(|r| r.id.0), Some(1));
        assert_eq!(find_room(&rooms, "ünÏcode").map(|r| r.id.0), Some(2));
        assert!(find_room(&rooms, "random").is_none());
    }
}
