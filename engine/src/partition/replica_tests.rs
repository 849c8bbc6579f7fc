//! A leader's log and high watermark are its own: the follower's operations refuse it.

use super::*;
use crate::partition::test_support::{run, ME, OTHER};
use kafka_protocol::records::Compression;
use spate_net::records::{encode_batch, now_ms, plain_record};
use spate_storage::LogConfig;

fn replicated_leader() -> Role {
    Role::Leader {
        replicas: vec![ME, OTHER],
        isr: vec![ME, OTHER],
        partition_epoch: 0,
    }
}

/// A leader in epoch 1 of a partition replicated on ME and OTHER, in `dir`, and its first
/// batch of five records, appended.
async fn leader_with_a_batch(dir: &std::path::Path) -> (Partition, Appended) {
    let partition = leader_over(dir, 1).await;
    let appended = append_five(&partition, "v");
    (partition, appended)
}

/// [`leader_with_a_batch`], once the batch is durable.
async fn durable_leader_with_a_batch(dir: &std::path::Path) -> Partition {
    let (partition, appended) = leader_with_a_batch(dir).await;
    partition
        .log()
        .wait_durable(appended.last_offset)
        .await
        .unwrap();
    partition
}

/// Leader in `epoch` of a partition replicated on ME and OTHER, over the log in `dir/t-0`
/// (opened, or reopened).
async fn leader_over(dir: &std::path::Path, epoch: i32) -> Partition {
    let log = PartitionLog::open(dir.join("t-0"), LogConfig::default())
        .await
        .unwrap();
    Partition::new(
        TopicPartition::new("t", 0),
        Uuid::nil(),
        log,
        ME,
        replicated_leader(),
        LeaderEpoch(epoch),
        1,
    )
}

/// A batch of five records of `value`, appended as leader.
fn append_five(partition: &Partition, value: &'static str) -> Appended {
    let records: Vec<_> = (0..5)
        .map(|index| plain_record(index, None, Some(bytes::Bytes::from(value)), now_ms()))
        .collect();
    let batch = encode_batch(&records, Compression::None).unwrap();
    partition.append(ProducedBatch::InRequest(&batch)).unwrap()
}

/// A deposed leader's late answer reaching a replica that leads now (the fetcher drops those;
/// this is the partition's own guard): it neither moves the high watermark nor cuts the log.
#[test]
fn a_leader_refuses_a_followers_truncation_restart_and_high_watermark() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let partition = durable_leader_with_a_batch(dir.path()).await;
        // The follower has reported nothing: the high watermark stays at the start.
        assert_eq!(partition.high_watermark(), Offset(0));

        partition.follow_high_watermark(Offset(5));
        assert_eq!(partition.high_watermark(), Offset(0), "moved by an answer");
        assert!(matches!(
            partition.truncate_to(Offset(0)).await,
            Err(PartitionError::NotLeaderOrFollower)
        ));
        assert!(matches!(
            partition.restart_at(Offset(100)).await,
            Err(PartitionError::NotLeaderOrFollower)
        ));
        assert_eq!(
            partition.log_end_offset(),
            Offset(5),
            "the leader's log was cut"
        );

        // As a follower it takes all three.
        partition.set_role(Role::Follower { leader: OTHER }, LeaderEpoch(2), 1);
        partition.follow_high_watermark(Offset(3));
        assert_eq!(partition.high_watermark(), Offset(3));
        // (The batch straddling the cut goes whole, as in Kafka.)
        partition.truncate_to(Offset(2)).await.unwrap();
        assert_eq!(partition.log_end_offset(), Offset(0));
        assert_eq!(partition.high_watermark(), Offset(0));
        partition.log().close().await.unwrap();
    });
}

/// The produce path answers in two phases: the batch is appended as leader, and its wait
/// for acknowledgement runs later (after the connection's earlier requests). A replica that
/// was deposed in between must not answer that batch as acknowledged: as a follower it
/// would have taken the path of an unreplicated partition (durable here is enough) and
/// acknowledged a batch its new leader never had, which the truncation then removed (the
/// chaos run's lost acknowledged records).
#[test]
fn a_batch_appended_by_a_leader_deposed_before_its_wait_is_not_acknowledged() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let (partition, appended) = leader_with_a_batch(dir.path()).await;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);

        // Deposed, then the wait starts: a follower now.
        partition.set_role(Role::Follower { leader: OTHER }, LeaderEpoch(2), 1);
        for acks in [Acks::All, Acks::Leader] {
            let answer = partition.wait_acknowledged(&appended, acks, deadline).await;
            assert!(
                matches!(answer, Err(PartitionError::NotLeaderOrFollower)),
                "{acks:?}: {answer:?}"
            );
        }

        // Leader again in a newer term: still not the term that appended the batch.
        partition.set_role(replicated_leader(), LeaderEpoch(3), 1);
        let answer = partition
            .wait_acknowledged(&appended, Acks::All, deadline)
            .await;
        assert!(
            matches!(answer, Err(PartitionError::NotLeaderOrFollower)),
            "a later term: {answer:?}"
        );
        partition.log().close().await.unwrap();
    });
}

/// A replicated partition's high watermark only its followers can tell: restarted, it
/// starts from its checkpoint, not from the log start (which went back for consumers and
/// read nothing until every in-sync replica fetched again). A checkpoint whose batches a
/// truncation replaced is not trusted.
#[test]
fn a_replicated_high_watermark_restarts_from_its_checkpoint_while_the_log_still_holds_it() {
    run(async {
        let dir = tempfile::tempdir().unwrap();
        let partition = durable_leader_with_a_batch(dir.path()).await;
        partition.follower_fetched(OTHER, Offset(5), true, -1);
        assert_eq!(partition.high_watermark(), Offset(5));
        let (checkpoint_dir, checkpoint) = partition.high_watermark_checkpoint_due().unwrap();
        assert_eq!((checkpoint.offset, checkpoint.epoch), (Offset(5), 1));
        spate_storage::high_watermark::write(&checkpoint_dir, checkpoint, false).unwrap();
        partition.note_checkpointed(checkpoint.offset);
        assert!(partition.high_watermark_checkpoint_due().is_none());
        partition.log().close().await.unwrap();

        let partition = leader_over(dir.path(), 1).await;
        assert_eq!(partition.high_watermark(), Offset(5), "not restored");
        assert!(
            partition.high_watermark_checkpoint_due().is_none(),
            "unchanged since"
        );

        // Truncated as a follower below the checkpoint, then other batches at the same
        // offsets in a later epoch; the process stops before a new checkpoint.
        partition.set_role(Role::Follower { leader: OTHER }, LeaderEpoch(2), 1);
        partition.truncate_to(Offset(0)).await.unwrap();
        partition.set_role(replicated_leader(), LeaderEpoch(3), 1);
        let appended = append_five(&partition, "w");
        partition
            .log()
            .wait_durable(appended.last_offset)
            .await
            .unwrap();
        partition.log().close().await.unwrap();

        let partition = leader_over(dir.path(), 3).await;
        assert_eq!(partition.log_end_offset(), Offset(5));
        assert_eq!(
            partition.high_watermark(),
            Offset(0),
            "trusted a checkpoint of batches that are gone"
        );
        partition.log().close().await.unwrap();
    });
}
