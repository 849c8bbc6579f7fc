//! Walking a partition log batch by batch, for the rare paths that look inside stored data
//! (ListOffsets by timestamp, replaying `__consumer_offsets`). Never on the produce or fetch
//! path.

use bytes::Bytes;
use spate_storage::{batch::parse_stored_batch, Offset, ReadMode};

use crate::partition::{Isolation, Partition, PartitionError};

/// How much of the log one step reads.
const SCAN_CHUNK_BYTES: usize = 1 << 20;

/// Calls `visit(max_timestamp, batch)` for each stored batch from the log start to the
/// durable end (a leader's whole log; see `Isolation::LocalDurable`), in offset order,
/// until it returns true.
pub async fn scan_batches(
    partition: &Partition,
    mut visit: impl FnMut(i64, &Bytes) -> bool,
) -> Result<(), PartitionError> {
    let mut offset = partition.log_start_offset();
    while offset < partition.durable_end_offset() {
        let chunk = partition
            .read(
                offset,
                SCAN_CHUNK_BYTES,
                Isolation::LocalDurable,
                ReadMode::Copy,
            )
            .await?
            .into_bytes();
        let mut position = 0;
        let mut progressed = false;
        while let Some(info) = parse_stored_batch(&chunk[position..]) {
            let batch = chunk.slice(position..position + info.batch_bytes);
            if visit(info.max_timestamp, &batch) {
                return Ok(());
            }
            position += info.batch_bytes;
            offset = Offset(info.base_offset + i64::from(info.last_offset_delta) + 1);
            progressed = true;
        }
        if !progressed {
            break;
        }
    }
    Ok(())
}
