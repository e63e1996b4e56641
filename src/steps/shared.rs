//! What the steps of one run share: the output of a command that every check of a check run
//! reads (`pgbackrest info`), run once and handed to each. The engine gives every run a new
//! one, and a check run one for all its checks; a clone shares the same entries.

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
