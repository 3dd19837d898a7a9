//! `spread`: one long fan-out over several threads. A batch for a room of
//! 19,000 viewers is 19,000 sends of about 10 µs each; on one thread the
//! last viewer waits ~190 ms for what the first had at once. Split over the
//! cores, the batch is on every socket in a fraction of that. The caller
//! holds the room's lock throughout, so each viewer still gets the room's
//! batches in order and a joiner still sees a message either in its
//! snapshot or on its stream.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

/// Helper threads running now, over every room of the process: rooms on
/// other delivery workers fanning out at the same time share the same
/// cores, so together they start no more helpers than `threads - 1`.
static HELPERS: AtomicUsize = AtomicUsize::new(0);

/// Items one thread takes at least before another is worth starting
/// (starting one costs tens of microseconds; 1,024 sends cost milliseconds).
pub const MIN_PER_THREAD: usize = 1024;

/// Sums `each(item)` over `items`, on up to `threads` threads (this one
/// included) when there are enough items and the process is not already
/// running `threads - 1` helpers. A part with no helper is done here.
pub fn spread<T: Sync>(items: &[T], threads: usize, each: impl Fn(&T) -> u64 + Sync) -> u64 {
    let parts = (items.len() / MIN_PER_THREAD).clamp(1, threads.max(1));
    if parts == 1 {
        return items.iter().map(&each).sum();
    }
    let each = &each;
    let chunk = items.len().div_ceil(parts);
    let budget = threads.saturating_sub(1);
    thread::scope(|scope| {
        let mut parts = items.chunks(chunk);
        let mine = parts.next().unwrap_or_default();
        let mut inline = Vec::new();
        let mut helpers = Vec::new();
        for part in parts {
            if HELPERS.fetch_add(1, Ordering::AcqRel) >= budget {
                HELPERS.fetch_sub(1, Ordering::AcqRel);
                inline.push(part);
                continue;
            }
            let started = thread::Builder::new()
                .name("fan-out".into())
                .spawn_scoped(scope, move || {
                    let sum = part.iter().map(each).sum::<u64>();
                    HELPERS.fetch_sub(1, Ordering::AcqRel);
                    sum
                });
            match started {
                Ok(helper) => helpers.push(helper),
                Err(_) => {
                    HELPERS.fetch_sub(1, Ordering::AcqRel);
                    inline.push(part);
                }
            }
        }
        let mut total: u64 = mine.iter().map(each).sum();
        total += inline.iter().flat_map(|part| part.iter()).map(each).sum::<u64>();
        // A helper that panicked counts nothing; the panic stays in it.
        total
            + helpers
                .into_iter()
                .map(|helper| helper.join().unwrap_or(0))
                .sum::<u64>()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    #[test]
    fn every_item_is_taken_once_whatever_the_split() {
        for (len, threads) in [
            (0, 4),
            (10, 4),
            (MIN_PER_THREAD * 2, 1),
            (MIN_PER_THREAD * 3 + 7, 2),
            (5000, 8),
        ] {
            let items: Vec<usize> = (0..len).collect();
            let seen = Mutex::new(HashSet::new());
            let threads_used = Mutex::new(HashSet::new());
            let total = spread(&items, threads, |item| {
                assert!(seen.lock().unwrap().insert(*item), "{item} twice");
                threads_used.lock().unwrap().insert(thread::current().id());
                1
            });
            assert_eq!(total, len as u64);
            assert_eq!(seen.lock().unwrap().len(), len);
            let expected = if len == 0 {
                0
            } else {
                (len / MIN_PER_THREAD).clamp(1, threads)
            };
            assert_eq!(threads_used.lock().unwrap().len(), expected, "{len} over {threads}");
        }
    }
}
