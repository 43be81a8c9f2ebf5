//! An HTTP/3 request body as an `http_body::Body`, so a request read from a QUIC stream goes
//! into the same axum router as one read by hyper. It only moves bytes: the router's
//! `request_body` middleware bounds the size and the time it may take, as for HTTP/1.1, and
//! dropping the body (a refused or unread one) stops the peer's sending.

use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes};
use h3::server::RequestStream;
use http_body::{Body, Frame, SizeHint};

/// The receiving half of a request stream.
pub struct RecvBody {
    stream: RequestStream<h3_quinn::RecvStream, Bytes>,
    done: bool,
}

impl RecvBody {
    pub fn new(stream: RequestStream<h3_quinn::RecvStream, Bytes>) -> RecvBody {
        RecvBody {
            stream,
            done: false,
        }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h3::error::StreamError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if self.done {
            return Poll::Ready(None);
        }
        match ready!(self.stream.poll_recv_data(cx)) {
            Ok(Some(mut chunk)) => {
                let bytes = chunk.copy_to_bytes(chunk.remaining());
                Poll::Ready(Some(Ok(Frame::data(bytes))))
            }
            Ok(None) => {
                // Trailers are not read: the API takes none.
                self.done = true;
                Poll::Ready(None)
            }
            Err(e) => {
                self.done = true;
                Poll::Ready(Some(Err(e)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}

impl Drop for RecvBody {
    fn drop(&mut self) {
        if !self.done {
            self.stream.stop_sending(h3::error::Code::H3_NO_ERROR);
        }
    }
}
