//! One way to run a function over many items on a few threads: reading 1,000 container
//! records, checking 1,000 processes, removing many containers, unpacking an image's
//! layers, scanning a root file system's ELF files.
//!
//! The threads are scoped: they end before [`map`] returns. xrun processes go on to fork,
//! `unshare` or `setns` into a container's namespaces, which want no thread left behind, so
//! a pool that outlives the call (rayon's global pool) is not used.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The number of threads worth using for `items` items of which each thread should get at
/// least `min_per_thread`: at most the machine's cores, at least one.
pub fn threads_for(items: usize, min_per_thread: usize) -> usize {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    cores.min(items / min_per_thread.max(1)).max(1)
}

/// `f` applied to every item, on up to `threads` threads taking the next item as they go
/// (an item that waits long does not hold up the others), results in the order of `items`.
/// With one thread (or one item) it runs on the caller's. A panic in `f` is the caller's.
pub fn map<T, R, F>(items: &[T], threads: usize, f: F) -> Vec<R>
where
    T: Sync,
    R: Send,
    F: Fn(&T) -> R + Sync,
{
    let threads = threads.min(items.len());
    if threads <= 1 {
        return items.iter().map(&f).collect();
    }
    let next = AtomicUsize::new(0);
    let slots: Vec<Mutex<Option<R>>> = items.iter().map(|_| Mutex::new(None)).collect();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                loop {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let Some(item) = items.get(i) else { break };
                    let r = f(item);
                    *slots[i].lock().unwrap_or_else(|p| p.into_inner()) = Some(r);
                }
            });
        }
    });
    slots
        .into_iter()
        .map(|m| {
            m.into_inner()
                .unwrap_or_else(|p| p.into_inner())
                .expect("every item was taken by a thread")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn results_keep_the_items_order_on_any_number_of_threads() {
        let items: Vec<u64> = (0..1000).collect();
        for threads in [0, 1, 2, 7, 64, 5000] {
            let out = map(&items, threads, |x| x * 2);
            assert_eq!(
                out,
                items.iter().map(|x| x * 2).collect::<Vec<_>>(),
                "{threads}"
            );
        }
        assert!(map(&[] as &[u8], 4, |x| *x).is_empty());
    }

    #[test]
    fn a_slow_item_does_not_hold_up_the_others() {
        // One item sleeps; on two threads the other thread takes every other item meanwhile.
        let seen = std::sync::Mutex::new(Vec::new());
        let items: Vec<usize> = (0..20).collect();
        map(&items, 2, |&i| {
            if i == 0 {
                std::thread::sleep(Duration::from_millis(300));
            }
            seen.lock().unwrap().push(i);
        });
        let seen = seen.into_inner().unwrap();
        assert_eq!(seen.len(), 20);
        assert_eq!(*seen.last().unwrap(), 0, "{seen:?}");
    }

    #[test]
    fn thread_counts_stay_between_one_and_the_cores() {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        assert_eq!(threads_for(0, 64), 1);
        assert_eq!(threads_for(63, 64), 1);
        assert_eq!(threads_for(1_000_000, 64), cores);
        assert_eq!(threads_for(10, 0), cores.min(10));
    }
}
