//! Fuzz the frame codec and the WebSocket envelope with arbitrary bytes: the incremental
//! `Decoder` (fed whole, and in chunks whose size the first input byte picks), `decode_exact`
//! and `mux::unwrap`, for both directions' frame types. Beyond "never panics" it checks that
//! chunking never changes what is decoded, that the decoder never holds more than one frame
//! plus the chunk it was handed, and that every decoded frame survives a round trip through
//! the encoder, the envelope and back.

#![no_main]

use std::fmt::Debug;

use libfuzzer_sys::fuzz_target;
use quibble_protocol::codec::{self, CodecError, Decoder};
use quibble_protocol::limits::MAX_FRAME_LEN;
use quibble_protocol::mux::{self, Envelope};
use quibble_protocol::{ClientFrame, ServerFrame};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// The longest length prefix.
const MAX_PREFIX: usize = 5;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, bytes)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk) + 1;
    check::<ClientFrame>(bytes, chunk);
    check::<ServerFrame>(bytes, chunk);
});

fn check<T: DeserializeOwned + Serialize + PartialEq + Debug>(bytes: &[u8], chunk: usize) {
    let whole = decode_stream::<T>(bytes, bytes.len().max(1));
    let chunked = decode_stream::<T>(bytes, chunk);
    assert_eq!(whole, chunked, "chunking changed the outcome");
    for frame in &whole.0 {
        round_trip(frame);
    }
    if let Ok(frame) = codec::decode_exact::<T>(bytes, MAX_FRAME_LEN) {
        round_trip(&frame);
    }
    if let Ok(Envelope::Frame(id, frame)) = mux::unwrap::<T>(bytes, MAX_FRAME_LEN) {
        let encoded = codec::encode(&frame).expect("a decoded frame encodes");
        assert_eq!(
            mux::unwrap::<T>(&mux::wrap(id, &encoded), MAX_FRAME_LEN),
            Ok(Envelope::Frame(id, frame))
        );
    }
}

/// Push `bytes` in chunks of `chunk`, taking frames out after each push, until the end or the
/// first error.
fn decode_stream<T: DeserializeOwned>(bytes: &[u8], chunk: usize) -> (Vec<T>, Option<CodecError>) {
    let mut decoder = Decoder::new();
    let mut frames = Vec::new();
    for piece in bytes.chunks(chunk) {
        decoder.push(piece);
        loop {
            match decoder.next_frame::<T>() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => return (frames, Some(e)),
            }
        }
        assert!(
            decoder.buffered() <= MAX_FRAME_LEN + MAX_PREFIX + chunk,
            "the decoder holds {} bytes",
            decoder.buffered()
        );
    }
    (frames, None)
}

fn round_trip<T: DeserializeOwned + Serialize + PartialEq + Debug>(frame: &T) {
    let encoded = codec::encode(frame).expect("a decoded frame encodes");
    let again: T = codec::decode_exact(&encoded, MAX_FRAME_LEN).expect("an encoded frame decodes");
    assert_eq!(&again, frame);
}
