//! Running many fallible setup steps (sign-ups, room creation, connects) at most `limit` at a
//! time, so the server sees a bounded burst, with the results back in order.

use std::future::Future;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Run every task, at most `limit` at once; all results in the tasks' order, or the first
/// error (the remaining tasks are then cancelled). A task starts its own clock only when it is
/// first polled, which is after it got its turn.
pub async fn bounded<T, F>(limit: usize, tasks: Vec<F>) -> anyhow::Result<Vec<T>>
where
    T: Send + 'static,
    F: Future<Output = anyhow::Result<T>> + Send + 'static,
{
    let turns = Arc::new(Semaphore::new(limit.max(1)));
    let mut set = JoinSet::new();
    let count = tasks.len();
    for (index, task) in tasks.into_iter().enumerate() {
        let turns = turns.clone();
        set.spawn(async move {
            let _turn = turns
                .acquire_owned()
                .await
                .context("the task limiter closed")?;
            task.await.map(|value| (index, value))
        });
    }
    let mut results: Vec<Option<T>> = std::iter::repeat_with(|| None).take(count).collect();
    while let Some(joined) = set.join_next().await {
        let (index, value) = joined.map_err(|e| anyhow!("a setup task failed: {e}"))??;
        if let Some(slot) = results.get_mut(index) {
            *slot = Some(value);
        }
    }
    results
        .into_iter()
        .map(|value| value.context("a setup task returned no result"))
        .collect()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use anyhow::bail;

    use super::*;

    #[tokio::test]
    async fn keeps_the_order_and_the_limit() {
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..10u64)
            .map(|i| {
                let (running, most) = (running.clone(), most.clone());
                async move {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(10 - i)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                    Ok(i)
                }
            })
            .collect();
        assert_eq!(
            bounded(3, tasks).await.unwrap(),
            (0..10).collect::<Vec<_>>()
        );
        assert!(most.load(Ordering::SeqCst) <= 3);
    }

    #[tokio::test]
    async fn the_first_error_wins() {
        let tasks: Vec<_> = (0..4u32)
            .map(|i| async move {
                if i == 2 {
                    bail!("task {i} failed");
                }
                Ok(i)
            })
            .collect();
        let err = bounded(2, tasks).await.unwrap_err();
        assert_eq!(err.to_string(), "task 2 failed");
    }
}
