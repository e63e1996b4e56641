//! What the checks of one check run share: a tool's answer (`barman -f json list-backups
//! shop`) asked once per run, however many checks read it, even when they run at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OnceCell;

use super::StepError;

/// One answer, computed at most once.
type Answer = Arc<OnceCell<Result<serde_json::Value, StepError>>>;

/// Answers by key, each computed once. Cloning shares them.
#[derive(Debug, Clone, Default)]
pub struct Memo(Arc<Mutex<HashMap<String, Answer>>>);

impl Memo {
    /// The answer for `key`: computed by `compute` the first time (a caller arriving while it
    /// is being computed waits for it; if that caller is dropped, the next one computes).
    pub async fn get_or_compute<F>(
        &self,
        key: &str,
        compute: F,
    ) -> Result<serde_json::Value, StepError>
    where
        F: std::future::Future<Output = Result<serde_json::Value, StepError>>,
    {
        let cell = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .entry(key.to_owned())
            .or_default()
            .clone();
        cell.get_or_init(|| compute).await.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn each_key_is_computed_once_even_when_asked_at_once() {
        let memo = Memo::default();
        let calls = std::sync::atomic::AtomicU32::new(0);
        let ask = |key: &'static str| {
            let memo = memo.clone();
            let calls = &calls;
            async move {
                memo.get_or_compute(key, async {
                    calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                    tokio::task::yield_now().await;
                    Ok(serde_json::json!(key))
                })
                .await
            }
        };
        let (a, b, c) = tokio::join!(ask("x"), ask("x"), ask("y"));
        assert_eq!(a, Ok(serde_json::json!("x")));
        assert_eq!(b, Ok(serde_json::json!("x")));
        assert_eq!(c, Ok(serde_json::json!("y")));
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 2);
    }
}
