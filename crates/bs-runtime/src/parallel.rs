//! CPU work of one batch spread over the machine's cores.
//!
//! Consumers handle a batch at a time, and the CPU part of a batch (serialising,
//! compressing, parsing) is per item and independent, so it can use every core
//! while the database write that follows stays single. Scoped threads, not a
//! global pool: a batch is milliseconds of work, the thread start is
//! microseconds, and nothing outlives the call. Order is preserved.

use std::num::NonZeroUsize;

/// Below this many items a batch is mapped on the calling thread.
const MIN_PARALLEL: usize = 64;

/// Threads used for one batch: the machine's cores, at most four.
pub fn threads() -> usize {
    std::thread::available_parallelism()
        .map_or(1, NonZeroUsize::get)
        .clamp(1, 4)
}

/// `items.iter().map(f).collect()`, in parallel; the calling thread takes the first share.
pub fn map<T: Sync, R: Send>(items: &[T], f: impl Fn(&T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads <= 1 || items.len() < MIN_PARALLEL {
        return items.iter().map(f).collect();
    }
    let share = items.len().div_ceil(threads);
    let f = &f;
    std::thread::scope(|s| {
        let others: Vec<_> = items
            .chunks(share)
            .skip(1)
            .map(|c| s.spawn(move || c.iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = Vec::with_capacity(items.len());
        out.extend(items[..share].iter().map(f));
        for h in others {
            out.extend(join(h));
        }
        out
    })
}

/// `items.into_iter().map(f).collect()`, in parallel.
pub fn map_owned<T: Send, R: Send>(items: Vec<T>, f: impl Fn(T) -> R + Sync) -> Vec<R> {
    let threads = threads();
    if threads <= 1 || items.len() < MIN_PARALLEL {
        return items.into_iter().map(f).collect();
    }
    let share = items.len().div_ceil(threads);
    let mut shares: Vec<Vec<T>> = Vec::with_capacity(threads);
    let mut rest = items.into_iter();
    loop {
        let part: Vec<T> = rest.by_ref().take(share).collect();
        if part.is_empty() {
            break;
        }
        shares.push(part);
    }
    let mut shares = shares.into_iter();
    let first = shares.next().unwrap_or_default();
    let f = &f;
    std::thread::scope(|s| {
        let others: Vec<_> = shares
            .map(|c| s.spawn(move || c.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        let mut out: Vec<R> = first.into_iter().map(f).collect();
        for h in others {
            out.extend(join(h));
        }
        out
    })
}

/// A worker's result; a panic in it is re-raised here, as it would have been inline.
fn join<R>(h: std::thread::ScopedJoinHandle<'_, Vec<R>>) -> Vec<R> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_order_and_every_item_at_any_size() {
        for n in [0, 1, 63, 64, 65, 1000, 1001] {
            let items: Vec<u64> = (0..n).collect();
            let want: Vec<u64> = items.iter().map(|x| x * 3 + 1).collect();
            assert_eq!(map(&items, |x| x * 3 + 1), want, "map, n = {n}");
            assert_eq!(map_owned(items, |x| x * 3 + 1), want, "map_owned, n = {n}");
        }
    }

    #[test]
    fn uses_more_than_one_thread_for_a_large_batch() {
        if threads() < 2 {
            return;
        }
        let items: Vec<u32> = (0..1000).collect();
        let ids = map(&items, |_| std::thread::current().id());
        let distinct: std::collections::HashSet<_> = ids.into_iter().collect();
        assert!(distinct.len() >= 2, "one thread did all the work");
    }

    #[test]
    #[should_panic(expected = "item 900")]
    fn a_panic_in_a_worker_reaches_the_caller() {
        let items: Vec<u32> = (0..1000).collect();
        map(&items, |&x| assert!(x != 900, "item {x}"));
    }
}
