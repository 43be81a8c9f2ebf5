//! The password-hashing pool: every argon2 call of the server runs here, so hashing can never
//! take more than a fixed number of threads, cores and bytes, whatever arrives.
//!
//! A few dedicated threads (a setting; by default one per core, at most 4) take jobs from two
//! bounded queues, logins first, then sign-ups, so a flood of sign-ups cannot starve existing
//! users. Each thread allocates its argon2 memory (19 MiB) once, on its first job, and reuses
//! it for every hash, so the pool's memory is threads × 19 MiB and never grows. A job carries a
//! deadline: one that cannot start before it (or whose queue is full when it arrives) is
//! refused with [`HashPoolError::Busy`], which the API answers with 503 and Retry-After; a job
//! whose caller has gone away is skipped. Nothing waits without a deadline, and nothing runs on
//! the async runtime or tokio's blocking pool.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use super::AuthError;
use super::password;

/// Longest a started hash may take before its caller stops waiting (argon2 takes tens of ms).
const RUN_LIMIT: Duration = Duration::from_secs(30);

/// Why the pool did not produce an answer.
#[derive(Debug, thiserror::Error)]
pub enum HashPoolError {
    /// The queue was full, or the job could not start before its deadline.
    #[error("the password hashing queue is full; try again shortly")]
    Busy,
    #[error(transparent)]
    Hash(#[from] AuthError),
}

/// A handle to the hashing threads; they stop when the last handle is dropped.
pub struct HashPool {
    shared: Arc<Shared>,
    wait: Duration,
    /// Verified against when a login names no account, so the answer takes as long.
    unmatchable: String,
}

struct Shared {
    queues: Mutex<Queues>,
    ready: Condvar,
}

struct Queues {
    logins: VecDeque<Job>,
    signups: VecDeque<Job>,
    /// Most jobs each queue holds.
    capacity: usize,
    closed: bool,
}

/// Which queue a job waits in.
#[derive(Clone, Copy)]
enum Kind {
    /// Verifications (logins): taken first.
    Login,
    /// New hashes (sign-ups).
    Signup,
}

struct Job {
    deadline: Instant,
    work: Work,
}

enum Work {
    Hash {
        password: String,
        reply: oneshot::Sender<Result<String, AuthError>>,
    },
    Verify {
        password: String,
        phc: String,
        reply: oneshot::Sender<bool>,
    },
}

impl Work {
    fn abandoned(&self) -> bool {
        match self {
            Work::Hash { reply, .. } => reply.is_closed(),
            Work::Verify { reply, .. } => reply.is_closed(),
        }
    }

    fn run(self, memory: &mut [argon2::Block]) {
        let kind = match self {
            Work::Hash { .. } => "hash",
            Work::Verify { .. } => "verify",
        };
        metrics::counter!(crate::metrics::PASSWORD_HASHES, "kind" => kind).increment(1);
        match self {
            Work::Hash { password, reply } => {
                let _ = reply.send(password::hash_password(&password, memory));
            }
            Work::Verify {
                password,
                phc,
                reply,
            } => {
                let _ = reply.send(password::verify_password(&password, &phc, memory));
            }
        }
    }
}

impl HashPool {
    /// Start `threads` hashing threads (at least one) behind queues of `queue` jobs each; a
    /// job that cannot start within `wait` is refused.
    pub fn start(threads: usize, queue: usize, wait: Duration) -> Result<HashPool, AuthError> {
        let unmatchable = password::unmatchable_phc()?;
        let shared = Arc::new(Shared {
            queues: Mutex::new(Queues {
                logins: VecDeque::new(),
                signups: VecDeque::new(),
                capacity: queue.max(1),
                closed: false,
            }),
            ready: Condvar::new(),
        });
        let pool = HashPool {
            shared: shared.clone(),
            wait,
            unmatchable,
        };
        for i in 0..threads.max(1) {
            let shared = shared.clone();
            std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || work(&shared))
                .map_err(|e| AuthError::Hash(format!("cannot start a hashing thread: {e}")))?;
        }
        Ok(pool)
    }

    /// Seconds a refused caller should wait before trying again.
    pub fn retry_after_secs(&self) -> u64 {
        self.wait.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Hash a new password (a sign-up); queued behind logins.
    pub async fn hash(&self, password: String) -> Result<String, HashPoolError> {
        let (reply, answer) = oneshot::channel();
        self.submit(Kind::Signup, Work::Hash { password, reply })?;
        Ok(self.answer(answer).await??)
    }

    /// Whether `password` matches `phc`; with no `phc` (no such account), the same work is
    /// done against a hash nothing matches, and the answer is false.
    pub async fn verify(
        &self,
        password: String,
        phc: Option<String>,
    ) -> Result<bool, HashPoolError> {
        let known = phc.is_some();
        let phc = phc.unwrap_or_else(|| self.unmatchable.clone());
        let (reply, answer) = oneshot::channel();
        self.submit(
            Kind::Login,
            Work::Verify {
                password,
                phc,
                reply,
            },
        )?;
        Ok(self.answer(answer).await? && known)
    }

    fn submit(&self, kind: Kind, work: Work) -> Result<(), HashPoolError> {
        let mut queues = lock(&self.shared.queues);
        let capacity = queues.capacity;
        let queue = match kind {
            Kind::Login => &mut queues.logins,
            Kind::Signup => &mut queues.signups,
        };
        if queue.len() >= capacity {
            return Err(HashPoolError::Busy);
        }
        queue.push_back(Job {
            deadline: Instant::now() + self.wait,
            work,
        });
        drop(queues);
        self.shared.ready.notify_one();
        Ok(())
    }

    /// The job's answer; `Busy` if it was dropped unstarted or overran every deadline.
    async fn answer<T>(&self, answer: oneshot::Receiver<T>) -> Result<T, HashPoolError> {
        match tokio::time::timeout(self.wait + RUN_LIMIT, answer).await {
            Ok(Ok(value)) => Ok(value),
            _ => Err(HashPoolError::Busy),
        }
    }
}

impl Drop for HashPool {
    fn drop(&mut self) {
        lock(&self.shared.queues).closed = true;
        self.shared.ready.notify_all();
    }
}

fn lock(queues: &Mutex<Queues>) -> MutexGuard<'_, Queues> {
    queues.lock().unwrap_or_else(|p| p.into_inner())
}

/// One hashing thread: take the next job (logins first), skip it if it is late or nobody
/// waits for it any more (dropping its reply answers `Busy`), else run it in this thread's
/// memory.
fn work(shared: &Shared) {
    let mut memory = None;
    loop {
        let job = {
            let mut queues = lock(&shared.queues);
            loop {
                if queues.closed {
                    return;
                }
                if let Some(job) = queues
                    .logins
                    .pop_front()
                    .or_else(|| queues.signups.pop_front())
                {
                    break job;
                }
                queues = shared.ready.wait(queues).unwrap_or_else(|p| p.into_inner());
            }
        };
        if Instant::now() > job.deadline || job.work.abandoned() {
            continue;
        }
        job.work
            .run(memory.get_or_insert_with(password::new_memory));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn hashes_verifies_and_answers_unknown_accounts_false() {
        let pool = HashPool::start(1, 4, Duration::from_secs(10)).unwrap();
        let phc = pool.hash("correct horse".into()).await.unwrap();
        assert!(
            pool.verify("correct horse".into(), Some(phc.clone()))
                .await
                .unwrap()
        );
        assert!(!pool.verify("wrong horse".into(), Some(phc)).await.unwrap());
        assert!(!pool.verify("correct horse".into(), None).await.unwrap());
    }

    #[tokio::test]
    async fn a_full_queue_or_a_missed_deadline_is_busy_and_logins_go_first() {
        // One thread, queues of 2, and a deadline shorter than one hash.
        let pool = Arc::new(HashPool::start(1, 2, Duration::from_millis(1)).unwrap());
        let mut signups = Vec::new();
        for _ in 0..5 {
            let pool = pool.clone();
            signups.push(tokio::spawn(
                async move { pool.hash("password".into()).await },
            ));
        }
        let mut busy = 0;
        for signup in signups {
            if matches!(signup.await.unwrap(), Err(HashPoolError::Busy)) {
                busy += 1;
            }
        }
        // At most the first job starts in time; the queue holds 2; the rest are refused.
        assert!(busy >= 4, "{busy} of 5 refused");
        assert_eq!(pool.retry_after_secs(), 1);

        // A login queued behind waiting sign-ups is taken first: only sign-ups that had
        // started when it was queued (one more at most, popped while it was being submitted)
        // finish before it. Eight sign-ups leave the login a wide window on a loaded machine.
        let pool = Arc::new(HashPool::start(1, 8, Duration::from_secs(30)).unwrap());
        let phc = pool.hash("password".into()).await.unwrap();
        let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
        for n in 0..8 {
            let (pool, done_tx) = (pool.clone(), done_tx.clone());
            tokio::spawn(async move {
                let _ = pool.hash("password".into()).await;
                let _ = done_tx.send(format!("signup {n}"));
            });
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        let waiting = loop {
            let waiting = lock(&pool.shared.queues).signups.len();
            if (1..8).contains(&waiting) {
                break waiting;
            }
            assert!(Instant::now() < deadline, "the sign-ups never started");
            tokio::time::sleep(Duration::from_millis(1)).await;
        };
        let started = 8 - waiting;
        let login = pool.verify("password".into(), Some(phc)).await.unwrap();
        let _ = done_tx.send("login".to_owned());
        assert!(login);
        let mut order = Vec::new();
        while order.last().map(String::as_str) != Some("login") {
            order.push(done.recv().await.unwrap());
        }
        let before = order.len() - 1;
        assert!(before <= started + 1, "{started} had started: {order:?}");
        assert!(before < 8, "the login waited for every sign-up: {order:?}");
    }
}
