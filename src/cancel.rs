//! What async work shares: one cancellation signal for a run, with two levels (the first
//! interrupt cancels the running step and cleanup still runs, the second aborts cleanup
//! too), and the boxed future type the trait seams return.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use tokio::sync::watch;

/// A boxed future, for trait methods that return one (object-safe seams).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// A view of the run's interrupt level that fires at `threshold`.
#[derive(Debug, Clone)]
pub struct Cancel {
    level: Arc<watch::Sender<u8>>,
    threshold: u8,
}

impl Default for Cancel {
    fn default() -> Cancel {
        Cancel::new()
    }
}

impl Cancel {
    /// Fires on the first interrupt.
    pub fn new() -> Cancel {
        Cancel {
            level: Arc::new(watch::Sender::new(0)),
            threshold: 1,
        }
    }

    /// The same signal, firing only on the second interrupt: what cleanup steps watch.
    pub fn for_cleanup(&self) -> Cancel {
        Cancel {
            level: self.level.clone(),
            threshold: 2,
        }
    }

    /// Raises the interrupt level by one and returns the new level.
    pub fn interrupt(&self) -> u8 {
        let mut now = 0;
        self.level.send_modify(|l| {
            *l = l.saturating_add(1);
            now = *l;
        });
        now
    }

    /// How many interrupts have arrived.
    pub fn level(&self) -> u8 {
        *self.level.borrow()
    }

    pub fn is_cancelled(&self) -> bool {
        self.level() >= self.threshold
    }

    /// Resolves once this view has fired.
    pub async fn cancelled(&self) {
        let mut rx = self.level.subscribe();
        let threshold = self.threshold;
        // the sender lives as long as self, so this only ends by firing
        let _ = rx.wait_for(|l| *l >= threshold).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn two_levels() {
        let run = Cancel::new();
        let cleanup = run.for_cleanup();
        assert!(!run.is_cancelled());
        run.interrupt();
        run.cancelled().await;
        assert!(run.is_cancelled() && !cleanup.is_cancelled());
        run.interrupt();
        cleanup.cancelled().await;
        assert!(cleanup.is_cancelled());
    }
}
