//! Looking records up by timestamp, for ListOffsets: the first record at or after a time,
//! and the record with the largest timestamp.
//!
//! Kafka's algorithm (`UnifiedLog.fetchOffsetByTimestamp`, `LogSegment.findOffsetByTimestamp`):
//! take the first segment whose largest timestamp reaches the target; in it, the time index
//! gives the last entry at or below the target, the offset index the position of that entry's
//! batch; walk batch headers from there to the first batch whose maxTimestamp reaches the
//! target, and decode that one batch to find the exact record. Only records at or above the
//! log start offset count. In a LogAppendTime batch every record carries the batch's
//! maxTimestamp, whatever its own bytes say.
//!
//! These are rare, read-only paths; they never hold the log's `RefCell` across an `.await`.

use crate::batch::{BatchInfo, TIMESTAMP_TYPE_LOG_APPEND_TIME};
use crate::error::StorageError;
use crate::log::{LogState, PartitionLog, Status};
use crate::reader::SegmentWindow;
use crate::Offset;
use bytes::Bytes;
use glommio::io::DmaFile;
use std::io;
use std::rc::Rc;

/// Bytes read at a time when walking a segment for a lookup.
const LOOKUP_READ_BYTES: usize = 256 * 1024;

/// Where to walk in one segment.
struct SegmentPlan {
    file: Rc<DmaFile>,
    base_offset: Offset,
    start_position: u64,
    end_position: u64,
    log_start: Offset,
}

impl PartitionLog {
    /// The first record whose timestamp is at least `target` (ms), at or above the log start
    /// offset and below the durable end: its offset and timestamp, or `None` if there is
    /// none (ListOffsets then answers offset -1).
    pub async fn offset_for_timestamp(
        &self,
        target: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let mut after_segment: Option<Offset> = None;
        loop {
            let plan = {
                let state = self.readable_state()?;
                match plan_for_timestamp(&state, target, after_segment) {
                    Some(plan) => plan,
                    None => return Ok(None),
                }
            };
            let found = walk(&plan, |info| {
                info.last_offset() >= plan.log_start.0 && info.max_timestamp >= target
            })
            .await?;
            let mut next = found;
            while let Some((info, position, bytes)) = next {
                if let Some(record) =
                    first_record_at_or_after(&bytes, &info, target, plan.log_start)
                {
                    return Ok(Some(record));
                }
                // The header's maxTimestamp overstated its records: go on after it.
                let rest = SegmentPlan {
                    start_position: position + info.batch_bytes as u64,
                    file: plan.file.clone(),
                    ..plan
                };
                next = walk(&rest, |info| info.max_timestamp >= target).await?;
            }
            after_segment = Some(plan.base_offset);
        }
    }

    /// The record with the largest timestamp at or above the log start offset (the earliest
    /// of several with the same timestamp): its offset and timestamp, or `None` if no record
    /// has a timestamp. ListOffsets answers `MAX_TIMESTAMP` (-3) with it.
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, StorageError> {
        let (candidates, straddling) = {
            let state = self.readable_state()?;
            max_timestamp_candidates(&state)
        };
        let mut best: Option<(i64, Offset, SegmentPlan)> = None;
        let mut consider = |timestamp: i64, offset: Offset, plan: SegmentPlan| {
            let better = match &best {
                None => timestamp >= 0,
                Some((best_timestamp, best_offset, _)) => {
                    timestamp > *best_timestamp
                        || (timestamp == *best_timestamp && offset < *best_offset)
                }
            };
            if better {
                best = Some((timestamp, offset, plan));
            }
        };
        if let Some(plan) = straddling {
            if let Some((timestamp, offset)) = max_in_straddling_segment(&plan).await? {
                consider(timestamp, offset, plan);
            }
        }
        for (timestamp, offset, plan) in candidates {
            consider(timestamp, offset, plan);
        }
        let Some((timestamp, offset, plan)) = best else {
            return Ok(None);
        };
        let plan = {
            let state = self.readable_state()?;
            let Some(segment) = state.find_segment(plan.base_offset) else {
                return Ok(None); // deleted meanwhile by retention
            };
            let relative = u32::try_from(offset.0 - segment.base_offset.0).unwrap_or(0);
            SegmentPlan {
                start_position: segment.index.floor_position(relative),
                ..plan
            }
        };
        let found = walk(&plan, |info| info.last_offset() >= offset.0).await?;
        Ok(found.map(|(info, _, bytes)| {
            first_record_at_or_after(&bytes, &info, timestamp, plan.log_start).unwrap_or((
                Offset(info.base_offset.max(plan.log_start.0)),
                info.max_timestamp,
            ))
        }))
    }

    /// The state, if reads are allowed.
    fn readable_state(&self) -> Result<std::cell::Ref<'_, LogState>, StorageError> {
        let state = self.shared.state.borrow();
        if state.status == Status::Closed {
            return Err(StorageError::Closed);
        }
        Ok(state)
    }
}

/// The next segment (after `after_segment`) that may hold a record with timestamp >= `target`,
/// and where in it to start walking.
fn plan_for_timestamp(
    state: &LogState,
    target: i64,
    after_segment: Option<Offset>,
) -> Option<SegmentPlan> {
    let log_start = state.log_start;
    let segment = state.segments.iter().find(|segment| {
        after_segment.is_none_or(|after| segment.base_offset > after)
            && segment.end_offset > log_start
            && segment.size_bytes > 0
            && segment.max_timestamp >= target
    })?;
    let base = segment.base_offset;
    let from_time_index = segment
        .time_index
        .floor_offset(target)
        .map_or(base, |relative| Offset(base.0 + relative as i64));
    let start = from_time_index.max(log_start);
    let start_position = match u32::try_from(start.0 - base.0) {
        Ok(relative) => segment.index.floor_position(relative),
        Err(_) => 0,
    };
    Some(SegmentPlan {
        file: segment.log_file.clone(),
        base_offset: base,
        start_position,
        end_position: segment.size_bytes,
        log_start,
    })
}

/// Per readable segment, its (max timestamp, offset of max) from memory; and the segment that
/// holds the log start when its max lies below the log start (it must be walked).
type MaxCandidates = (Vec<(i64, Offset, SegmentPlan)>, Option<SegmentPlan>);

fn max_timestamp_candidates(state: &LogState) -> MaxCandidates {
    let log_start = state.log_start;
    let mut candidates = Vec::new();
    let mut straddling = None;
    for segment in &state.segments {
        if segment.end_offset <= log_start || segment.size_bytes == 0 {
            continue;
        }
        let plan = SegmentPlan {
            file: segment.log_file.clone(),
            base_offset: segment.base_offset,
            start_position: 0,
            end_position: segment.size_bytes,
            log_start,
        };
        if segment.base_offset >= log_start {
            if segment.max_timestamp >= 0 {
                candidates.push((segment.max_timestamp, segment.offset_of_max_timestamp, plan));
            }
        } else {
            let relative = u32::try_from(log_start.0 - segment.base_offset.0).unwrap_or(0);
            straddling = Some(SegmentPlan {
                start_position: segment.index.floor_position(relative),
                ..plan
            });
        }
    }
    (candidates, straddling)
}

/// The largest timestamp among the records at or above the log start in the segment that
/// holds the log start, and the last offset of the batch holding it. The batch that straddles
/// the log start is decoded (its maxTimestamp may belong to a deleted record); the others
/// count by their headers.
async fn max_in_straddling_segment(plan: &SegmentPlan) -> io::Result<Option<(i64, Offset)>> {
    let mut best: Option<(i64, Offset)> = None;
    let mut consider = |timestamp: i64, offset: Offset| {
        if timestamp >= 0 && best.is_none_or(|(best_timestamp, _)| timestamp > best_timestamp) {
            best = Some((timestamp, offset));
        }
    };
    let log_start = plan.log_start.0;
    let straddling = walk(plan, |info| info.last_offset() >= log_start).await?;
    let Some((info, position, bytes)) = straddling else {
        return Ok(None);
    };
    if info.base_offset >= log_start {
        consider(info.max_timestamp, Offset(info.last_offset()));
    } else if let Some(timestamp) = max_record_timestamp(&bytes, &info, plan.log_start) {
        consider(timestamp, Offset(info.last_offset()));
    }
    let rest = SegmentPlan {
        start_position: position + info.batch_bytes as u64,
        file: plan.file.clone(),
        ..*plan
    };
    walk(&rest, |info| {
        consider(info.max_timestamp, Offset(info.last_offset()));
        false
    })
    .await?;
    Ok(best)
}

/// The largest timestamp among a stored batch's records at or above `log_start`.
fn max_record_timestamp(bytes: &Bytes, info: &BatchInfo, log_start: Offset) -> Option<i64> {
    if info.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0 {
        return Some(info.max_timestamp);
    }
    let mut buffer = bytes.clone();
    match kafka_protocol::records::RecordBatchDecoder::decode(&mut buffer) {
        Ok(set) => set
            .records
            .iter()
            .filter(|record| record.offset >= log_start.0)
            .map(|record| record.timestamp)
            .max(),
        Err(_) => Some(info.max_timestamp),
    }
}

/// Walks batch headers from the plan's start; returns the first batch `take` accepts, with
/// its position and bytes, or `None` at the end of the segment.
async fn walk(
    plan: &SegmentPlan,
    mut take: impl FnMut(&BatchInfo) -> bool,
) -> io::Result<Option<(BatchInfo, u64, Bytes)>> {
    let mut window = SegmentWindow::new(&plan.file, plan.end_position, LOOKUP_READ_BYTES);
    let mut position = plan.start_position;
    while position < plan.end_position {
        let info = window
            .complete_batch_at(position, false, plan.base_offset)
            .await?;
        if take(&info) {
            let bytes = Bytes::copy_from_slice(window.batch_bytes(position, &info).await?);
            return Ok(Some((info, position, bytes)));
        }
        position += info.batch_bytes as u64;
    }
    Ok(None)
}

/// The first record of a stored batch at or above `log_start` whose timestamp is at least
/// `target`. A batch whose records cannot be decoded (a producer's CRC covers garbage) is
/// answered at batch level: its first offset and its maxTimestamp.
fn first_record_at_or_after(
    bytes: &Bytes,
    info: &BatchInfo,
    target: i64,
    log_start: Offset,
) -> Option<(Offset, i64)> {
    let first_readable = Offset(info.base_offset.max(log_start.0));
    if info.attributes & TIMESTAMP_TYPE_LOG_APPEND_TIME != 0 {
        return (info.max_timestamp >= target).then_some((first_readable, info.max_timestamp));
    }
    let mut buffer = bytes.clone();
    match kafka_protocol::records::RecordBatchDecoder::decode(&mut buffer) {
        Ok(set) => set
            .records
            .iter()
            .find(|record| record.offset >= log_start.0 && record.timestamp >= target)
            .map(|record| (Offset(record.offset), record.timestamp)),
        Err(error) => {
            tracing::warn!(offset = info.base_offset, %error, "cannot decode a stored batch for a timestamp lookup");
            (info.max_timestamp >= target).then_some((first_readable, info.max_timestamp))
        }
    }
}

#[cfg(test)]
#[path = "timestamps_tests.rs"]
mod tests;
