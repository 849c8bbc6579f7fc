//! Tests of the tail cache: reads served from memory, the per-shard budget and eviction
//! order, reads that span disk and cache, and a cache that is off.
use super::*;
use crate::appender::CHUNK_BYTES;
use crate::testing::{
    encode_batch, received_batch, run, same_batch, split_batches, temp_dir, BatchSpec,
};
use crate::{LogConfig, PartitionLog, ReadMode, RecordsPiece};

/// A one-record batch of exactly `total_bytes` bytes.
fn batch_of(total_bytes: usize, fill: u8) -> Vec<u8> {
    let mut value_bytes = total_bytes.saturating_sub(80);
    loop {
        let batch = encode_batch(&BatchSpec::records(1, value_bytes).fill(fill));
        match batch.len().cmp(&total_bytes) {
            std::cmp::Ordering::Equal => return batch,
            std::cmp::Ordering::Less => value_bytes += 1,
            std::cmp::Ordering::Greater => value_bytes -= 1,
        }
    }
}

/// Appends each batch and waits for it to be durable (one flush, one cache insert each).
async fn append_each(log: &PartitionLog, batches: &[Vec<u8>]) {
    for batch in batches {
        let appended = log.append(batch, 0).unwrap();
        log.wait_durable(appended.last_offset).await.unwrap();
    }
}

/// Reads everything from offset 0 in one read, checks it against `sent`, and returns how
/// many of its bytes came from the cache.
async fn read_everything(log: &PartitionLog, sent: &[Vec<u8>]) -> (usize, usize) {
    let records = log
        .read_records(Offset(0), 1 << 30, Offset::MAX, ReadMode::Copy)
        .await
        .unwrap();
    let cached = records.cached_bytes();
    let total = records.len();
    let stored = split_batches(&records.into_bytes());
    assert_eq!(stored.len(), sent.len());
    for (number, ((info, bytes), sent)) in stored.iter().zip(sent).enumerate() {
        assert_eq!(info.base_offset, number as i64);
        assert!(same_batch(bytes, sent), "batch {number} differs");
    }
    (cached, total)
}

#[test]
fn tail_reads_come_from_memory_even_when_batches_and_headers_straddle_chunks() {
    run(async {
        set_shard_budget_bytes(DEFAULT_SHARD_BUDGET_BYTES);
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        // The second batch's header starts 30 bytes before the first chunk ends; the third
        // is larger than a chunk.
        let sent = vec![
            batch_of(CHUNK_BYTES - 30, 1),
            batch_of(5_000, 2),
            batch_of(CHUNK_BYTES + 10_000, 3),
            batch_of(100, 4),
        ];
        // All in one flush, then one per flush (overlapping partial blocks).
        for batch in &sent[..3] {
            log.append(batch, 0).unwrap();
        }
        log.wait_durable(Offset(2)).await.unwrap();
        append_each(&log, &sent[3..]).await;
        let (cached, total) = read_everything(&log, &sent).await;
        assert_eq!(cached, total, "every byte from memory");
        // A read from the middle starts at the batch holding the offset.
        let records = log
            .read_records(Offset(1), 1, Offset::MAX, ReadMode::Copy)
            .await
            .unwrap();
        let middle = split_batches(&records.clone().into_bytes());
        assert_eq!(middle.len(), 1, "max_bytes 1 still gives one whole batch");
        assert!(same_batch(&middle[0].1, &sent[1]));
        assert!(records
            .pieces()
            .iter()
            .all(|piece| matches!(piece, RecordsPiece::Cached(_))));
        log.close().await.unwrap();
        assert_eq!(shard_usage_bytes().0, 0, "closing a log frees its chunks");
    });
}

#[test]
fn the_budget_evicts_oldest_first_and_reads_span_disk_and_cache() {
    run(async {
        let budget = 4 * CHUNK_BYTES;
        set_shard_budget_bytes(budget);
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let sent: Vec<Vec<u8>> = (0..40).map(|fill| batch_of(50_000, fill)).collect();
        append_each(&log, &sent).await;
        let (used, limit) = shard_usage_bytes();
        assert!(used <= limit && limit == budget, "{used} of {limit}");
        assert!(used > 0);
        let (cached, total) = read_everything(&log, &sent).await;
        assert!(
            cached > 0 && cached < total,
            "{cached} of {total} from memory"
        );
        // The cached part is the tail: once a piece comes from the cache, the rest does.
        let records = log
            .read_records(Offset(0), 1 << 30, Offset::MAX, ReadMode::Copy)
            .await
            .unwrap();
        let first_cached = records
            .pieces()
            .iter()
            .position(|piece| matches!(piece, RecordsPiece::Cached(_)))
            .unwrap();
        assert!(records.pieces()[first_cached..]
            .iter()
            .all(|piece| matches!(piece, RecordsPiece::Cached(_))));
        // The newest batch is served from memory.
        let last = log
            .read_records(Offset(39), 1 << 20, Offset::MAX, ReadMode::Copy)
            .await
            .unwrap();
        assert_eq!(last.cached_bytes(), last.len());
        // Shrinking the budget evicts at once.
        set_shard_budget_bytes(CHUNK_BYTES);
        assert!(shard_usage_bytes().0 <= CHUNK_BYTES);
        read_everything(&log, &sent).await;
        log.close().await.unwrap();
    });
}

#[test]
fn partitions_of_a_shard_share_one_budget() {
    run(async {
        set_shard_budget_bytes(4 * CHUNK_BYTES);
        let dir = temp_dir();
        let first = PartitionLog::open(dir.path().join("a"), LogConfig::default())
            .await
            .unwrap();
        let second = PartitionLog::open(dir.path().join("b"), LogConfig::default())
            .await
            .unwrap();
        let sent: Vec<Vec<u8>> = (0..4).map(|fill| batch_of(100_000, fill)).collect();
        append_each(&first, &sent).await;
        let (cached_before, _) = read_everything(&first, &sent).await;
        assert!(cached_before > 0);
        // Newer writes of another partition push the first one's chunks out.
        append_each(&second, &sent).await;
        append_each(&second, &sent).await;
        let (cached_after, _) = read_everything(&first, &sent).await;
        assert_eq!(
            cached_after, 0,
            "the oldest chunks, the first log's, went first"
        );
        assert!(shard_usage_bytes().0 <= 4 * CHUNK_BYTES);
        first.close().await.unwrap();
        second.close().await.unwrap();
    });
}

#[test]
fn a_zero_budget_turns_the_cache_off() {
    run(async {
        set_shard_budget_bytes(0);
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let sent: Vec<Vec<u8>> = (0..5).map(|fill| batch_of(3_000, fill)).collect();
        append_each(&log, &sent).await;
        assert_eq!(read_everything(&log, &sent).await.0, 0);
        assert_eq!(shard_usage_bytes().0, 0);
        log.close().await.unwrap();
        set_shard_budget_bytes(DEFAULT_SHARD_BUDGET_BYTES);
    });
}

#[test]
fn reads_never_see_data_above_the_durable_end() {
    run(async {
        set_shard_budget_bytes(DEFAULT_SHARD_BUDGET_BYTES);
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("p"), LogConfig::default())
            .await
            .unwrap();
        let sent: Vec<Vec<u8>> = (0..3).map(|fill| batch_of(1_000, fill)).collect();
        append_each(&log, &sent[..2]).await;
        // Appended but not yet flushed: invisible, whatever the cache holds.
        log.append(&sent[2], 0).unwrap();
        let records = log
            .read_records(Offset(0), 1 << 20, Offset::MAX, ReadMode::Copy)
            .await
            .unwrap();
        let batches = split_batches(&records.into_bytes());
        assert!(batches.len() <= 3);
        assert!(batches.len() as i64 <= log.durable_end_offset().0);
        log.close().await.unwrap();
    });
}

#[test]
fn received_batches_are_charged_about_their_size() {
    run(async {
        set_shard_budget_bytes(DEFAULT_SHARD_BUDGET_BYTES);
        let dir = temp_dir();
        let log = PartitionLog::open(dir.path().join("received"), LogConfig::default())
            .await
            .unwrap();
        // Twenty 20 KiB batches received in place, all in one flush: each is adopted after
        // the last, whose chunk it cuts at a block boundary.
        let sent: Vec<Vec<u8>> = (0..20).map(|fill| batch_of(20 * 1024, fill)).collect();
        for batch in &sent {
            let received = received_batch(batch, log.receive_front(batch.len()));
            assert!(log.append_received(received, 0).unwrap().in_place);
        }
        log.wait_durable(Offset(19)).await.unwrap();
        let (cached, total) = read_everything(&log, &sent).await;
        assert_eq!(cached, total, "every byte from memory");
        // Each chunk is charged its allocation, which fits its batch to a few blocks (a pool
        // chunk each would be 20 x 128 KiB).
        let data: usize = sent.iter().map(Vec::len).sum();
        let (charged, _) = shard_usage_bytes();
        assert!(
            charged <= data + 20 * 8 * 1024,
            "{charged} charged for {data}"
        );
        log.close().await.unwrap();
        assert_eq!(shard_usage_bytes().0, 0, "closing a log frees its chunks");
    });
}
