//! Worker threads whose panic becomes an error of the caller instead of ending the process.
//!
//! `std::thread::scope` re-raises a worker's panic in the thread that opened the scope, which
//! takes the whole program down with exit code 101. A bug that a hostile input reaches must
//! end as one error sentence and exit code 1 instead, so every pool goes through here.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Condvar, Mutex, PoisonError};

/// A worker thread panicked: a bug in oci-build, reported with the panic's own message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a worker thread stopped with an internal error ({message}); please report it")]
pub struct WorkerPanicked {
    pub message: String,
}

/// The text a panic was raised with (`panic!("…")`, `expect("…")`, an index out of bounds).
pub(crate) fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "no message".to_owned()
    }
}

/// Runs `f` here, turning a panic into an error. Whatever `f` shared with others may be left
/// half-changed (a poisoned lock); callers use this only around work whose result is dropped
/// or reported as failed.
pub(crate) fn catch<R>(f: impl FnOnce() -> R) -> Result<R, WorkerPanicked> {
    catch_unwind(AssertUnwindSafe(f)).map_err(|payload| WorkerPanicked {
        message: panic_message(payload.as_ref()),
    })
}

/// Runs `work` on `threads` scoped threads (each usually loops, taking the next item from a
/// shared counter or queue) while `main` runs on this one, and joins them all. A worker's
/// panic is returned as an error after every thread has ended; `main`'s own panic stays one.
pub(crate) fn run_beside<R>(
    threads: usize,
    work: impl Fn() + Sync,
    main: impl FnOnce() -> R,
) -> Result<R, WorkerPanicked> {
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads).map(|_| scope.spawn(&work)).collect();
        let result = main();
        // Each handle joined, so the scope has no panicked thread left to re-raise.
        let mut panicked = None;
        for handle in handles {
            if let Err(payload) = handle.join() {
                panicked.get_or_insert_with(|| panic_message(payload.as_ref()));
            }
        }
        match panicked {
            Some(message) => Err(WorkerPanicked { message }),
            None => Ok(result),
        }
    })
}

/// [`run_beside`] with nothing to do on this thread but wait.
pub(crate) fn run(threads: usize, work: impl Fn() + Sync) -> Result<(), WorkerPanicked> {
    run_beside(threads, work, || ())
}

/// Runs `work` while no other thread runs work claimed by the same `key` (a cache path), and
/// after any that did: a layer's worker and the prefetcher that reached the same package first
/// do not download or extract it twice; the second finds it in the cache.
pub(crate) fn exclusive<R>(key: &std::path::Path, work: impl FnOnce() -> R) -> R {
    static HELD: Mutex<Vec<std::path::PathBuf>> = Mutex::new(Vec::new());
    static RELEASED: Condvar = Condvar::new();
    let lock = || HELD.lock().unwrap_or_else(PoisonError::into_inner);
    let mut held = RELEASED
        .wait_while(lock(), |held| held.iter().any(|k| k == key))
        .unwrap_or_else(PoisonError::into_inner);
    held.push(key.to_owned());
    drop(held);
    // Released however `work` ends, a panic included.
    struct Release<'k>(&'k std::path::Path);
    impl Drop for Release<'_> {
        fn drop(&mut self) {
            HELD.lock()
                .unwrap_or_else(PoisonError::into_inner)
                .retain(|k| k != self.0);
            RELEASED.notify_all();
        }
    }
    let _release = Release(key);
    work()
}

/// At most this many packages are extracted at once in a process, whoever extracts them (a
/// layer's workers, a prefetch): extraction is CPU work, and each holds a decompressor's
/// window (an xz `.deb` member: up to 8 MiB plus buffers), so more at once on a few cores
/// only adds memory.
const EXTRACTIONS: usize = 3;

/// Runs `work` (extracting one package) once fewer than [`EXTRACTIONS`] others run.
pub(crate) fn extraction<R>(work: impl FnOnce() -> R) -> R {
    static RUNNING: Mutex<usize> = Mutex::new(0);
    static ENDED: Condvar = Condvar::new();
    let mut running = ENDED
        .wait_while(
            RUNNING.lock().unwrap_or_else(PoisonError::into_inner),
            |running| *running >= EXTRACTIONS,
        )
        .unwrap_or_else(PoisonError::into_inner);
    *running += 1;
    drop(running);
    // Given back however `work` ends, a panic included.
    struct Slot;
    impl Drop for Slot {
        fn drop(&mut self) {
            *RUNNING.lock().unwrap_or_else(PoisonError::into_inner) -= 1;
            ENDED.notify_one();
        }
    }
    let _slot = Slot;
    work()
}

/// Runs `work` on each of `items` on `threads` worker threads and hands each result to
/// `consume` on this thread, in the order of `items`. A worker starts item `i` only once
/// `consume` has taken item `i - ahead`, so at most `ahead` results wait at any time: the
/// queue between the stages is bounded, and work done ahead is never more than `ahead` items.
/// The first error of `consume` stops the workers (items not yet started are not started) and
/// is returned; a worker's panic is the outer error.
pub(crate) fn in_order<T: Sync, R: Send, E>(
    items: &[T],
    threads: usize,
    ahead: usize,
    work: impl Fn(&T) -> R + Sync,
    mut consume: impl FnMut(R) -> Result<(), E>,
) -> Result<Result<(), E>, WorkerPanicked> {
    struct Queue<R> {
        started: usize,
        taken: usize,
        /// Results not yet taken, by item index (at most `ahead`).
        done: std::collections::BTreeMap<usize, Result<R, WorkerPanicked>>,
        stop: bool,
    }
    let ahead = ahead.max(1);
    let queue = Mutex::new(Queue {
        started: 0,
        taken: 0,
        done: std::collections::BTreeMap::new(),
        stop: false,
    });
    let changed = Condvar::new();
    let lock = || queue.lock().unwrap_or_else(PoisonError::into_inner);
    let worker = || {
        loop {
            let index = {
                let mut state = changed
                    .wait_while(lock(), |q| {
                        !q.stop && q.started < items.len() && q.started >= q.taken + ahead
                    })
                    .unwrap_or_else(PoisonError::into_inner);
                if state.stop || state.started >= items.len() {
                    return;
                }
                state.started += 1;
                state.started - 1
            };
            let result = catch(|| work(&items[index]));
            lock().done.insert(index, result);
            changed.notify_all();
        }
    };
    let consumer = || {
        // Set however the consumer ends, a panic included, so no worker waits for ever.
        struct StopOnDrop<'q, F: Fn()>(&'q F);
        impl<F: Fn()> Drop for StopOnDrop<'_, F> {
            fn drop(&mut self) {
                (self.0)();
            }
        }
        let stop = || {
            lock().stop = true;
            changed.notify_all();
        };
        let _stop = StopOnDrop(&stop);
        (|| {
            for index in 0..items.len() {
                let result = {
                    let mut state = changed
                        .wait_while(lock(), |q| !q.done.contains_key(&index))
                        .unwrap_or_else(PoisonError::into_inner);
                    state.taken += 1;
                    state.done.remove(&index).expect("waited for")
                };
                changed.notify_all();
                match result {
                    Ok(result) => consume(result).map_err(Ok)?,
                    Err(panicked) => return Err(Err(panicked)),
                }
            }
            Ok(())
        })()
    };
    match run_beside(threads.clamp(1, items.len().max(1)), worker, consumer)? {
        Ok(()) => Ok(Ok(())),
        Err(Ok(error)) => Ok(Err(error)),
        Err(Err(panicked)) => Err(panicked),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[test]
    fn a_panicking_worker_is_an_error_and_the_others_finish() {
        let next = AtomicUsize::new(0);
        let done = AtomicUsize::new(0);
        let result = run(3, || {
            loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= 20 {
                    return;
                }
                if i == 5 {
                    let items: Vec<u8> = Vec::new();
                    let _ = items[i];
                }
                done.fetch_add(1, Ordering::SeqCst);
            }
        });
        let error = result.unwrap_err();
        assert!(error.message.contains("index out of bounds"), "{error}");
        assert!(error.to_string().contains("please report it"), "{error}");
        assert_eq!(done.load(Ordering::SeqCst), 19, "the other workers stopped");
    }

    #[test]
    fn workers_that_end_well_give_main_its_result() {
        let count = AtomicUsize::new(0);
        let result = run_beside(
            4,
            || {
                count.fetch_add(1, Ordering::SeqCst);
            },
            || 7,
        );
        assert_eq!(result, Ok(7));
        assert_eq!(count.load(Ordering::SeqCst), 4);
    }

    #[test]
    fn in_order_keeps_the_order_and_works_at_most_ahead_items_beyond_the_consumer() {
        let items: Vec<usize> = (0..50).collect();
        let started = AtomicUsize::new(0);
        let taken = AtomicUsize::new(0);
        let most_ahead = AtomicUsize::new(0);
        let mut seen = Vec::new();
        let result = in_order(
            &items,
            4,
            3,
            |&item| {
                let ahead =
                    started.fetch_add(1, Ordering::SeqCst) + 1 - taken.load(Ordering::SeqCst);
                most_ahead.fetch_max(ahead, Ordering::SeqCst);
                // Later items finish first, so order comes from the queue, not from timing.
                std::thread::sleep(std::time::Duration::from_millis((50 - item as u64) % 4));
                item * 2
            },
            |result| {
                seen.push(result);
                taken.fetch_add(1, Ordering::SeqCst);
                Ok::<(), ()>(())
            },
        );
        assert_eq!(result, Ok(Ok(())));
        assert_eq!(seen, items.iter().map(|i| i * 2).collect::<Vec<_>>());
        // The item being consumed, plus `ahead` beyond it.
        assert!(most_ahead.load(Ordering::SeqCst) <= 4, "{most_ahead:?}");
    }

    #[test]
    fn in_order_stops_at_the_first_error_and_reports_a_panic() {
        let items: Vec<usize> = (0..100).collect();
        let started = AtomicUsize::new(0);
        let result = in_order(
            &items,
            2,
            2,
            |&item| {
                started.fetch_add(1, Ordering::SeqCst);
                item
            },
            |item| if item == 5 { Err(item) } else { Ok(()) },
        );
        assert_eq!(result, Ok(Err(5)));
        assert!(started.load(Ordering::SeqCst) <= 9, "{started:?}");

        let result = in_order(
            &items,
            2,
            2,
            |&item| {
                assert!(item != 7, "item {item}");
            },
            |()| Ok::<(), ()>(()),
        );
        assert!(result.unwrap_err().message.contains("item 7"));

        let empty: [u8; 0] = [];
        assert_eq!(in_order(&empty, 4, 4, |_| (), |()| Err(())), Ok(Ok(())));
    }

    #[test]
    fn catch_turns_a_panic_into_its_message() {
        let error = catch(|| -> u8 { panic!("bad {}", "input") }).unwrap_err();
        assert_eq!(error.message, "bad input");
        assert_eq!(catch(|| 3), Ok(3));
    }
}
