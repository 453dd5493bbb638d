//! Worker threads whose panic becomes an error of the caller instead of ending the process.
//!
//! `std::thread::scope` re-raises a worker's panic in the thread that opened the scope, which
//! takes the whole program down with exit code 101. A bug that a hostile input reaches must
//! end as one error sentence and exit code 1 instead, so every pool goes through here.

use std::any::Any;
use std::panic::{AssertUnwindSafe, catch_unwind};

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
    fn catch_turns_a_panic_into_its_message() {
        let error = catch(|| -> u8 { panic!("bad {}", "input") }).unwrap_err();
        assert_eq!(error.message, "bad input");
        assert_eq!(catch(|| 3), Ok(3));
    }
}
