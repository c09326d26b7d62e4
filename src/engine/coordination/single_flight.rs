//! At most one in-flight computation per key; everyone else joins it.
//!
//! The computation runs on its own task, so it finishes (and fills the cache) even if
//! every caller goes away, and it removes its own entry when done (by a drop guard, so
//! also when it panics), so the next request after a failure or a panic starts afresh.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use futures::future::{BoxFuture, FutureExt, Shared};

type Flight<T> = Shared<BoxFuture<'static, Option<T>>>;

/// A registry of in-flight computations producing `T`.
#[derive(Debug)]
pub struct SingleFlight<T: Clone> {
    flights: Arc<Mutex<HashMap<String, Flight<T>>>>,
}

impl<T: Clone> Default for SingleFlight<T> {
    fn default() -> Self {
        Self {
            flights: Arc::new(Mutex::new(HashMap::new())),
        }
    }
}

/// Whether the caller started the computation or joined one in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Leader,
    Joined,
}

impl<T: Clone + Send + Sync + 'static> SingleFlight<T> {
    /// Runs `start()` unless a computation for `key` is in flight, and awaits the
    /// result. `None` means the computation panicked.
    pub async fn run<F>(&self, key: &str, start: impl FnOnce() -> F) -> (Option<T>, Role)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let (flight, role) = self.begin(key, start);
        (flight.await, role)
    }

    /// As [`SingleFlight::run`], without awaiting: the flight's result, to await when
    /// the caller wants it. `start()` is called only by the leader, before any other
    /// caller can join (so it may register what joiners look for).
    pub fn begin<F>(
        &self,
        key: &str,
        start: impl FnOnce() -> F,
    ) -> (impl Future<Output = Option<T>> + Send + 'static, Role)
    where
        F: Future<Output = T> + Send + 'static,
    {
        let mut flights = self.flights.lock().expect("flight map is never poisoned");
        if let Some(flight) = flights.get(key) {
            return (flight.clone(), Role::Joined);
        }
        let registry = Arc::clone(&self.flights);
        let owned_key = key.to_owned();
        let work = start();
        // The removal needs the lock we hold, so it cannot run before the insert.
        let task = tokio::spawn(async move {
            let _entry = FlightEntry {
                registry,
                key: owned_key,
            };
            work.await
        });
        let flight: Flight<T> = async move { task.await.ok() }.boxed().shared();
        flights.insert(key.to_owned(), flight.clone());
        (flight, Role::Leader)
    }

    /// Number of computations in flight.
    #[must_use]
    pub fn in_flight(&self) -> usize {
        self.flights
            .lock()
            .expect("flight map is never poisoned")
            .len()
    }
}

/// Removes a flight's entry when its task ends, however it ends (a panic unwinds
/// through this drop).
struct FlightEntry<T: Clone> {
    registry: Arc<Mutex<HashMap<String, Flight<T>>>>,
    key: String,
}

impl<T: Clone> Drop for FlightEntry<T> {
    fn drop(&mut self) {
        // A poisoned map means another thread panicked holding it: nothing to undo.
        if let Ok(mut flights) = self.registry.lock() {
            flights.remove(&self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    #[tokio::test]
    async fn concurrent_callers_share_one_computation() {
        let flights = Arc::new(SingleFlight::<usize>::default());
        let runs = Arc::new(AtomicUsize::new(0));
        let mut tasks = Vec::new();
        for _ in 0..50 {
            let flights = Arc::clone(&flights);
            let runs = Arc::clone(&runs);
            tasks.push(tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        runs.fetch_add(1, Ordering::SeqCst) + 1
                    })
                    .await
            }));
        }
        let mut leaders = 0;
        for task in tasks {
            let (value, role) = task.await.expect("task");
            assert_eq!(value, Some(1));
            leaders += usize::from(role == Role::Leader);
        }
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(leaders, 1);
        assert_eq!(flights.in_flight(), 0, "the finished flight removed itself");
        let (value, role) = flights.run("k", || async { 7 }).await;
        assert_eq!(
            (value, role),
            (Some(7), Role::Leader),
            "a later call starts afresh"
        );
    }

    #[tokio::test]
    async fn a_panicking_computation_does_not_poison_its_key() {
        let flights = SingleFlight::<u8>::default();
        let (value, _) = flights
            .run("k", || async {
                panic!("injected fault");
            })
            .await;
        assert_eq!(value, None, "the panic is reported as no value");
        assert_eq!(flights.in_flight(), 0, "the panicked flight removed itself");
        let (value, role) = flights.run("k", || async { 3 }).await;
        assert_eq!(
            (value, role),
            (Some(3), Role::Leader),
            "the key works again"
        );
    }

    #[tokio::test]
    async fn computation_survives_its_callers() {
        let flights = Arc::new(SingleFlight::<u8>::default());
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let caller = {
            let flights = Arc::clone(&flights);
            tokio::spawn(async move {
                flights
                    .run("k", || async move {
                        tokio::time::sleep(Duration::from_millis(20)).await;
                        let _ = sender.send(());
                        1
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        caller.abort();
        receiver.await.expect("the computation still completes");
    }
}
