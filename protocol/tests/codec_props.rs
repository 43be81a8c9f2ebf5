//! Property tests of the frame codec and the WebSocket envelope: every frame value
//! round-trips however the bytes are split, and arbitrary bytes (random, truncated, with
//! huge length prefixes) decode to a value or an error, never a panic or a big allocation.

use proptest::prelude::*;
use quibble_protocol::codec::{self, Decoder, write_varint};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::wire::MessageFrame;
use quibble_protocol::{
    ChatMessage, ClientFrame, ConversationId, Cursor, ErrorCode, ServerFrame, UserId,
};

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,40}", "\\PC{0,300}"]
}

fn cursor() -> impl Strategy<Value = Cursor> {
    (any::<u64>(), any::<u64>()).prop_map(|(epoch, seq)| Cursor { epoch, seq })
}

fn error_code() -> impl Strategy<Value = ErrorCode> {
    prop::sample::select(ErrorCode::ALL.to_vec())
}

fn message() -> impl Strategy<Value = ChatMessage> {
    (
        any::<u64>(),
        any::<u64>(),
        any::<u64>(),
        text(),
        any::<u64>(),
        any::<u64>(),
        text(),
    )
        .prop_map(
            |(conversation, seq, author, author_name, client_id, sent_at_ms, body)| ChatMessage {
                conversation: ConversationId(conversation),
                seq,
                author: UserId(author),
                author_name,
                client_id,
                sent_at_ms,
                body,
            },
        )
}

fn client_frame() -> impl Strategy<Value = ClientFrame> {
    prop_oneof![
        (any::<u16>(), text()).prop_map(|(version, token)| ClientFrame::Hello { version, token }),
        any::<u64>().prop_map(|nonce| ClientFrame::Ping { nonce }),
        (any::<u64>(), prop::option::of(cursor())).prop_map(|(c, resume)| ClientFrame::Join {
            conversation: ConversationId(c),
            resume
        }),
        (any::<u64>(), text()).prop_map(|(client_id, body)| ClientFrame::Send { client_id, body }),
        (any::<u64>(), any::<u16>())
            .prop_map(|(before_seq, limit)| ClientFrame::History { before_seq, limit }),
        Just(ClientFrame::Leave),
    ]
}

fn server_frame() -> impl Strategy<Value = ServerFrame> {
    prop_oneof![
        (
            any::<u16>(),
            any::<u64>(),
            text(),
            any::<u64>(),
            any::<u32>()
        )
            .prop_map(|(version, user, username, epoch, heartbeat_ms)| {
                ServerFrame::Welcome {
                    version,
                    user: UserId(user),
                    username,
                    epoch,
                    heartbeat_ms,
                }
            }),
        any::<u64>().prop_map(|nonce| ServerFrame::Pong { nonce }),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()).prop_map(
            |(c, epoch, head_seq, from_seq)| {
                ServerFrame::Joined {
                    conversation: ConversationId(c),
                    epoch,
                    head_seq,
                    from_seq,
                }
            }
        ),
        message().prop_map(ServerFrame::Message),
        (any::<u64>(), any::<u64>(), any::<u64>()).prop_map(|(client_id, seq, sent_at_ms)| {
            ServerFrame::Sent {
                client_id,
                seq,
                sent_at_ms,
            }
        }),
        (any::<u64>(), error_code(), text()).prop_map(|(client_id, code, reason)| {
            ServerFrame::Rejected {
                client_id,
                code,
                reason,
            }
        }),
        (
            any::<u64>(),
            prop::collection::vec(message(), 0..8),
            any::<bool>()
        )
            .prop_map(
                |(before_seq, messages, has_more)| ServerFrame::HistoryPage {
                    before_seq,
                    messages,
                    has_more
                }
            ),
        (error_code(), text()).prop_map(|(code, reason)| ServerFrame::Error { code, reason }),
        (any::<u32>(), text()).prop_map(|(reconnect_after_ms, reason)| ServerFrame::GoAway {
            reconnect_after_ms,
            reason
        }),
        any::<u64>().prop_map(|resume_from| ServerFrame::Lagged { resume_from }),
    ]
}

/// Decode everything `bytes` yields when pushed in chunks of the given sizes.
fn decode_chunked<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    chunks: &[usize],
) -> Result<Vec<T>, codec::CodecError> {
    let mut decoder = Decoder::new();
    let mut out = Vec::new();
    let mut rest = bytes;
    let mut sizes = chunks.iter().cycle();
    while !rest.is_empty() {
        let n = (*sizes.next().unwrap_or(&1)).clamp(1, rest.len());
        decoder.push(&rest[..n]);
        rest = &rest[n..];
        while let Some(frame) = decoder.next_frame::<T>()? {
            out.push(frame);
        }
        // Never more than one frame plus the chunk just pushed.
        assert!(decoder.buffered() <= MAX_FRAME_LEN + 5 + n);
    }
    Ok(out)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_frames_round_trip_in_any_split(
        frames in prop::collection::vec(client_frame(), 1..8),
        chunks in prop::collection::vec(1usize..64, 1..8),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            codec::encode_into(f, &mut wire).unwrap();
        }
        prop_assert_eq!(decode_chunked::<ClientFrame>(&wire, &chunks).unwrap(), frames);
    }

    #[test]
    fn server_frames_round_trip_in_any_split(
        frames in prop::collection::vec(server_frame(), 1..8),
        chunks in prop::collection::vec(1usize..512, 1..8),
    ) {
        let mut wire = Vec::new();
        for f in &frames {
            codec::encode_into(f, &mut wire).unwrap();
        }
        prop_assert_eq!(decode_chunked::<ServerFrame>(&wire, &chunks).unwrap(), frames);
    }

    #[test]
    fn a_borrowed_message_frame_encodes_as_the_owned_one(m in message()) {
        prop_assert_eq!(
            codec::encode(&MessageFrame(&m)).unwrap(),
            codec::encode(&ServerFrame::Message(m.clone())).unwrap()
        );
    }

    #[test]
    fn frames_round_trip_through_the_websocket_envelope(frame in client_frame(), id in any::<u64>()) {
        let encoded = codec::encode(&frame).unwrap();
        let message = mux::wrap(id, &encoded);
        prop_assert_eq!(mux::unwrap::<ClientFrame>(&message, MAX_FRAME_LEN).unwrap(), Envelope::Frame(id, frame));
    }

    #[test]
    fn random_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..2048), chunks in prop::collection::vec(1usize..128, 1..4)) {
        let _ = decode_chunked::<ClientFrame>(&bytes, &chunks);
        let _ = decode_chunked::<ServerFrame>(&bytes, &chunks);
        let _ = mux::unwrap::<ClientFrame>(&bytes, MAX_FRAME_LEN);
        let _ = codec::decode_exact::<ServerFrame>(&bytes, MAX_FRAME_LEN);
    }

    #[test]
    fn truncated_frames_wait_for_more_and_never_yield_garbage(frame in server_frame(), cut in any::<prop::sample::Index>()) {
        let wire = codec::encode(&frame).unwrap();
        let cut = cut.index(wire.len());
        let mut decoder = Decoder::new();
        decoder.push(&wire[..cut]);
        prop_assert_eq!(decoder.next_frame::<ServerFrame>().unwrap(), None);
        decoder.push(&wire[cut..]);
        prop_assert_eq!(decoder.next_frame::<ServerFrame>().unwrap(), Some(frame));
    }

    #[test]
    fn huge_length_prefixes_are_refused_without_allocating(len in (MAX_FRAME_LEN as u64 + 1)..u64::from(u32::MAX) * 4, tail in prop::collection::vec(any::<u8>(), 0..64)) {
        let mut wire = Vec::new();
        write_varint(len, &mut wire);
        wire.extend_from_slice(&tail);
        let mut decoder = Decoder::new();
        decoder.push(&wire);
        let refused = matches!(
            decoder.next_frame::<ClientFrame>(),
            Err(codec::CodecError::TooLarge { .. } | codec::CodecError::BadLength)
        );
        prop_assert!(refused);
        prop_assert!(decoder.buffered() == wire.len());
    }
}
