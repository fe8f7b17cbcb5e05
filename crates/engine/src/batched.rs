//! Recording what comes one by one in batches: whatever came meanwhile is
//! recorded together, in one transaction, off the async threads.

use crate::{Engine, Inner};
use std::sync::Weak;
use tokio::sync::mpsc::UnboundedReceiver;

/// Starts a task that takes what `items` brings, as many at once as came
/// meanwhile (at most `most`), and hands each batch to `record` on a
/// blocking thread (recording touches the disk), until the engine is gone
/// or the senders are.
pub(crate) fn record_in_batches<T: Send + 'static>(
    engine: Weak<Inner>,
    mut items: UnboundedReceiver<T>,
    most: usize,
    record: fn(&Engine, Vec<T>),
) {
    tokio::spawn(async move {
        while let Some(first) = items.recv().await {
            let mut batch = vec![first];
            while batch.len() < most {
                match items.try_recv() {
                    Ok(item) => batch.push(item),
                    Err(_) => break,
                }
            }
            let Some(inner) = engine.upgrade() else {
                return;
            };
            let engine = Engine { inner };
            let _ = tokio::task::spawn_blocking(move || record(&engine, batch)).await;
        }
    });
}
