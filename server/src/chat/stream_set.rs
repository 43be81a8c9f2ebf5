//! The conversation streams a connection runs inside its task: a vector of boxed futures and
//! one shared waker. A stream that is woken marks the set and wakes the connection's task; the
//! next poll then polls every stream of the set (a connection has one or a few) and drops those
//! that ended. This replaces `FuturesUnordered`, which costs three allocations for the first
//! stream (its ready queue, a stub task, a task per future, ~200 bytes) where this costs the
//! waker (one small allocation) and the vector.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Futures run together; [`StreamSet::poll_ended`] reports each one's end.
pub struct StreamSet<F> {
    streams: Vec<Pin<Box<F>>>,
    waker: Arc<SetWaker>,
}

/// What the streams are polled with: marks the set as woken and wakes the task polling it.
#[derive(Default)]
struct SetWaker {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for SetWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

impl<F: Future<Output = ()>> StreamSet<F> {
    /// A set holding `stream`.
    pub fn new(stream: F) -> StreamSet<F> {
        let mut set = StreamSet {
            streams: Vec::new(),
            waker: Arc::new(SetWaker::default()),
        };
        set.push(stream);
        set
    }

    /// Add a stream; it is polled at the set's next poll.
    pub fn push(&mut self, stream: F) {
        if self.streams.capacity() == 0 {
            self.streams.reserve_exact(1);
        }
        self.streams.push(Box::pin(stream));
        self.waker.woken.store(true, Ordering::Release);
    }

    pub fn is_empty(&self) -> bool {
        self.streams.is_empty()
    }

    /// Poll the streams if one was woken; ready when one or more ended (they are dropped).
    pub fn poll_ended(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.waker.task.register(cx.waker());
        if !self.waker.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let waker = Waker::from(Arc::clone(&self.waker));
        let mut streams_cx = Context::from_waker(&waker);
        let before = self.streams.len();
        self.streams
            .retain_mut(|stream| stream.as_mut().poll(&mut streams_cx).is_pending());
        if self.streams.len() == before {
            return Poll::Pending;
        }
        if self.streams.len() * 2 < self.streams.capacity() {
            self.streams.shrink_to_fit();
        }
        Poll::Ready(())
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::oneshot;

    use super::*;

    /// A stream that ends when its sender fires, counting its polls.
    fn stream(polls: &Arc<AtomicUsize>) -> (oneshot::Sender<()>, impl Future<Output = ()> + use<>) {
        let (tx, mut rx) = oneshot::channel::<()>();
        let polls = Arc::clone(polls);
        let stream = poll_fn(move |cx| {
            polls.fetch_add(1, Ordering::Relaxed);
            Pin::new(&mut rx).poll(cx).map(|_| ())
        });
        (tx, stream)
    }

    #[tokio::test]
    async fn a_woken_stream_is_polled_and_an_ended_one_dropped() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (first_tx, first) = stream(&polls);
        let (second_tx, second) = stream(&polls);
        let mut set = StreamSet::new(first);
        set.push(second);
        let mut cx = Context::from_waker(Waker::noop());
        assert!(set.poll_ended(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "each new stream is polled once"
        );
        assert!(set.poll_ended(&mut cx).is_pending());
        assert_eq!(
            polls.load(Ordering::Relaxed),
            2,
            "nothing woken, nothing polled"
        );
        first_tx.send(()).unwrap();
        assert!(
            set.poll_ended(&mut cx).is_ready(),
            "the ended stream is reported"
        );
        assert!(!set.is_empty());
        second_tx.send(()).unwrap();
        assert!(set.poll_ended(&mut cx).is_ready());
        assert!(set.is_empty());
        assert_eq!(
            set.streams.capacity(),
            0,
            "the last one gone, nothing is kept"
        );
    }

    #[tokio::test]
    async fn a_stream_woken_later_wakes_the_task_polling_the_set() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (tx, first) = stream(&polls);
        let mut set = StreamSet::new(first);
        let task = tokio::spawn(async move { poll_fn(|cx| set.poll_ended(cx)).await });
        tokio::task::yield_now().await;
        tx.send(()).unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(5), task)
            .await
            .expect("the task was woken")
            .unwrap();
    }
}
