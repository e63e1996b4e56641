//! What the checks of one check run share: the output of a command every check reads
//! (`pgbackrest info`, `barman list-backups`), run once and handed to each, even when they
//! run at once. A drill shares nothing (its steps change what they read: a backup taken by
//! one step must be seen by the next); a clone shares the same entries.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::StepError;

type Cell = Arc<OnceCell<Result<String, StepError>>>;

#[derive(Debug, Clone, Default)]
pub struct Shared(Arc<Mutex<HashMap<String, Cell>>>);

impl Shared {
    /// The result of `work` for `key`: the first caller runs it, the others wait for it and
    /// get a copy. A caller dropped while it runs (a timeout, an interrupt) hands the work
    /// to the next one.
    pub async fn once<F, Fut>(&self, key: &str, work: F) -> Result<String, StepError>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = Result<String, StepError>>,
    {
        let cell = {
            let mut map = self.0.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(key.to_owned()).or_default().clone()
        };
        cell.get_or_init(work).await.clone()
    }
}

/// `work`'s result: shared under `key` in a check run, run afresh in a drill (`None`).
pub async fn once<F, Fut>(shared: Option<&Shared>, key: &str, work: F) -> Result<String, StepError>
where
    F: FnOnce() -> Fut,
    Fut: Future<Output = Result<String, StepError>>,
{
    match shared {
        Some(s) => s.once(key, work).await,
        None => work().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_work_runs_once_for_every_caller() {
        let shared = Shared::default();
        let runs = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let mut all = Vec::new();
        for _ in 0..5 {
            let (shared, runs) = (shared.clone(), runs.clone());
            all.push(tokio::spawn(async move {
                shared
                    .once("info", || async move {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        Ok("out".to_owned())
                    })
                    .await
            }));
        }
        for a in all {
            assert_eq!(a.await.expect("join").expect("ok"), "out");
        }
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        let other = shared.once("other", || async { Ok("x".to_owned()) }).await;
        assert_eq!(other.expect("ok"), "x");
    }
}
