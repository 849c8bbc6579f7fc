//! DescribeLogDirs (key 35): the node's data directory, its size and free space, and the
//! bytes on disk of each partition this shard hosts, as UIs (Kafka UI, AKHQ) and
//! `kafka-log-dirs.sh` show them.
//!
//! Each shard is a broker: it answers for the partitions it hosts, in the one log dir the
//! node has (`--data-dir`). Sizes come from the file system (the `.log` files of each
//! partition's directory), read off the shard: this is an admin request, rare and not on
//! the data path.

use std::path::{Path, PathBuf};
use std::rc::Rc;

use kafka_protocol::messages::describe_log_dirs_response::{
    DescribeLogDirsPartition, DescribeLogDirsResult, DescribeLogDirsTopic,
};
use kafka_protocol::messages::{
    ApiKey, DescribeLogDirsRequest, DescribeLogDirsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{ApiSpec, RequestContext};
use crate::partition::table::replica_dir;
use crate::security::acl::AclOperation;
use crate::security::authorizer::Access;
use crate::shard::Shard;

/// Served versions (v4 adds the directory's total and usable bytes).
pub const SPEC: ApiSpec = ApiSpec::new(ApiKey::DescribeLogDirs, 1, 4);

/// Describes the log dir and the asked partitions (all hosted here when `topics` is null).
pub async fn handle(
    shard: &Rc<Shard>,
    context: &RequestContext,
    request: DescribeLogDirsRequest,
) -> DescribeLogDirsResponse {
    if !Access::new(shard, context).cluster(AclOperation::Describe) {
        return DescribeLogDirsResponse::default()
            .with_error_code(ResponseError::ClusterAuthorizationFailed.code());
    }
    let image = shard.image();
    let here = shard.partitions.broker();
    // (topic, partitions hosted here that were asked for).
    let data_dir = shard.node.config.data_dir.clone();
    let mut wanted: Vec<(String, Vec<(i32, PathBuf)>)> = Vec::new();
    for topic in image.topics() {
        let asked: Option<Vec<i32>> = match &request.topics {
            None => None,
            Some(topics) => match topics
                .iter()
                .find(|asked| asked.topic.0.as_str() == topic.name)
            {
                Some(asked) => Some(asked.partitions.clone()),
                None => continue,
            },
        };
        let hosted: Vec<(i32, PathBuf)> = (0..topic.partition_count())
            .filter(|index| asked.as_ref().is_none_or(|asked| asked.contains(index)))
            .filter_map(|index| {
                let assignment = topic.partition(index)?;
                assignment.replicas.contains(&here).then(|| {
                    let dir =
                        replica_dir(&data_dir, &topic.name, index, &assignment.replicas, here);
                    (index, dir)
                })
            })
            .collect();
        if !hosted.is_empty() {
            wanted.push((topic.name.clone(), hosted));
        }
    }
    let measured = glommio::executor()
        .spawn_blocking(move || measure(&data_dir, wanted))
        .await;
    let result = DescribeLogDirsResult::default()
        .with_log_dir(StrBytes::from_string(
            shard.node.config.data_dir.display().to_string(),
        ))
        .with_total_bytes(measured.total_bytes)
        .with_usable_bytes(measured.usable_bytes)
        .with_topics(measured.topics);
    let result = match measured.error {
        Some(error) => {
            tracing::warn!(%error, "DescribeLogDirs cannot read the data directory");
            result.with_error_code(ResponseError::KafkaStorageError.code())
        }
        None => result,
    };
    DescribeLogDirsResponse::default().with_results(vec![result])
}

/// What the file system says.
struct Measured {
    topics: Vec<DescribeLogDirsTopic>,
    /// The file system's size and free space (-1 when unknown).
    total_bytes: i64,
    usable_bytes: i64,
    error: Option<std::io::Error>,
}

fn measure(data_dir: &Path, wanted: Vec<(String, Vec<(i32, PathBuf)>)>) -> Measured {
    let (total_bytes, usable_bytes, error) = match crate::host::file_system_bytes(data_dir) {
        Ok((total, usable)) => (total, usable, None),
        Err(error) => (-1, -1, Some(error)),
    };
    let topics = wanted
        .into_iter()
        .map(|(name, partitions)| {
            let partitions = partitions
                .into_iter()
                .map(|(index, dir)| {
                    let size = log_bytes(&dir);
                    DescribeLogDirsPartition::default()
                        .with_partition_index(index)
                        .with_partition_size(size)
                        .with_offset_lag(0)
                        .with_is_future_key(false)
                })
                .collect();
            DescribeLogDirsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions)
        })
        .collect();
    Measured {
        topics,
        total_bytes,
        usable_bytes,
        error,
    }
}

/// Bytes of a partition's segment files (0 for a partition not written yet). An active
/// segment's preallocated tail is counted, as `du` would (the bytes are reserved).
fn log_bytes(dir: &Path) -> i64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter(|entry| entry.file_name().to_string_lossy().ends_with(".log"))
        .filter_map(|entry| entry.metadata().ok())
        .map(|metadata| metadata.len() as i64)
        .sum()
}
