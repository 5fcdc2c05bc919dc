//! Bus metrics, emitted through the `metrics` facade (the recorder is installed by
//! the binary). Names are constants here so every implementation reports the same
//! series: `battlescope_bus_{published,delivered,committed}_total{topic}` plus a
//! `group` label on the consumer side.

pub(crate) const PUBLISHED: &str = "battlescope_bus_published_total";
pub(crate) const DELIVERED: &str = "battlescope_bus_delivered_total";
pub(crate) const COMMITTED: &str = "battlescope_bus_committed_total";
pub(crate) const PRUNED: &str = "battlescope_bus_pruned_total";

pub(crate) fn published(bus: &'static str, topic: &str, n: usize) {
    metrics::counter!(PUBLISHED, "bus" => bus, "topic" => topic.to_owned()).increment(n as u64);
}

pub(crate) fn delivered(bus: &'static str, topic: &str, group: &str, n: usize) {
    metrics::counter!(DELIVERED, "bus" => bus, "topic" => topic.to_owned(), "group" => group.to_owned())
        .increment(n as u64);
}

/// `n` counts the records the commit covered, i.e. the deliveries handed to
/// `commit` (not the offset distance, which has gaps in the embedded log).
pub(crate) fn committed(bus: &'static str, topic: &str, group: &str, n: usize) {
    metrics::counter!(COMMITTED, "bus" => bus, "topic" => topic.to_owned(), "group" => group.to_owned())
        .increment(n as u64);
}

pub(crate) fn pruned(topic: &str, n: u64) {
    metrics::counter!(PRUNED, "bus" => "embedded", "topic" => topic.to_owned()).increment(n);
}

/// Counts deliveries per topic for one batch, in the order topics first appear.
pub(crate) fn per_topic<'a>(topics: impl Iterator<Item = &'a str>) -> Vec<(&'a str, usize)> {
    let mut out: Vec<(&'a str, usize)> = Vec::new();
    for t in topics {
        match out.iter_mut().find(|(name, _)| *name == t) {
            Some((_, n)) => *n += 1,
            None => out.push((t, 1)),
        }
    }
    out
}
