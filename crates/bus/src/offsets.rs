//! Low-water-mark commits: work on a partition may finish out of order, but the committed
//! offset never passes a record that is still in flight, so a crash re-delivers it.

use std::collections::{BTreeSet, HashMap};

#[derive(Debug, Default)]
pub struct OffsetTracker {
    partitions: HashMap<i32, PartitionState>,
}

#[derive(Debug, Default)]
struct PartitionState {
    in_flight: BTreeSet<i64>,
    /// Highest offset handed out.
    highest: i64,
    /// Highest offset already committed.
    committed: i64,
}

impl OffsetTracker {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records that `offset` of `partition` is now being worked on.
    ///
    /// An offset at or below the commit point is a record delivered again: the broker did not
    /// keep that commit (a rebalance took the partition while it was being stored, say), so
    /// the commit point steps back below it and finishing it commits again. Without this the
    /// group's offset stays behind for good, the partition looks stalled, and every member
    /// keeps rejoining the group.
    pub fn start(&mut self, partition: i32, offset: i64) {
        let p =
            self.partitions.entry(partition).or_insert(PartitionState { committed: offset - 1, ..Default::default() });
        p.in_flight.insert(offset);
        p.highest = p.highest.max(offset);
        p.committed = p.committed.min(offset - 1);
    }

    /// Records that `offset` is done; answers the offset that may now be committed, if the
    /// commit point moved.
    pub fn finish(&mut self, partition: i32, offset: i64) -> Option<i64> {
        let p = self.partitions.get_mut(&partition)?;
        p.in_flight.remove(&offset);
        let point = match p.in_flight.first() {
            Some(lowest) => lowest - 1,
            None => p.highest,
        };
        if point > p.committed {
            p.committed = point;
            Some(point)
        } else {
            None
        }
    }

    /// Work in flight over every partition.
    pub fn in_flight(&self) -> usize {
        self.partitions.values().map(|p| p.in_flight.len()).sum()
    }

    pub fn in_flight_on(&self, partition: i32) -> usize {
        self.partitions.get(&partition).map_or(0, |p| p.in_flight.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_commits_past_work_in_flight() {
        let mut t = OffsetTracker::new();
        for o in 10..15 {
            t.start(0, o);
        }
        assert_eq!(t.finish(0, 12), None);
        assert_eq!(t.finish(0, 11), None);
        assert_eq!(t.finish(0, 10), Some(12));
        assert_eq!(t.finish(0, 14), None);
        assert_eq!(t.finish(0, 13), Some(14));
        assert_eq!(t.in_flight(), 0);
        t.start(1, 0);
        assert_eq!(t.finish(1, 0), Some(0));
    }

    #[test]
    fn a_record_delivered_again_is_committed_again() {
        let mut t = OffsetTracker::new();
        for o in 5..8 {
            t.start(0, o);
            t.finish(0, o);
        }
        // The commit of 7 was lost in a rebalance; the broker hands out 7 again (and later 8).
        t.start(0, 7);
        assert_eq!(t.finish(0, 7), Some(7), "committed again");
        t.start(0, 8);
        assert_eq!(t.finish(0, 8), Some(8));
        // Redelivered from further back while a newer record is in flight: never past it.
        t.start(0, 9);
        t.start(0, 6);
        assert_eq!(t.finish(0, 6), Some(8));
        assert_eq!(t.finish(0, 9), Some(9));
    }
}
