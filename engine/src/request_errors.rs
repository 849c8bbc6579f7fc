//! The error codes a response carries, for `spate_request_errors_total{api,error}` (Kafka's
//! `RequestMetrics ErrorsPerSec`, without its NONE series: `spate_requests_total` counts
//! the requests).
//!
//! Like Kafka's `AbstractResponse.errorCounts`, every code in a response counts once: the
//! top-level one and each topic's, partition's, group's or member's. A partition refused
//! with NOT_LEADER_OR_FOLLOWER in a Produce of ten partitions counts once. Only codes other
//! than 0 are passed on, so a response without errors costs a walk over its fields and
//! nothing else.

use kafka_protocol::messages::{FetchResponse, ProduceResponse, ResponseKind};

/// Calls `each` with every non-zero error code of `response`.
pub fn each_error(response: &ResponseKind, mut each: impl FnMut(i16)) {
    let mut code = |code: i16| {
        if code != 0 {
            each(code)
        }
    };
    match response {
        ResponseKind::Produce(response) => produce_errors(response, code),
        ResponseKind::Fetch(response) => fetch_errors(response, code),
        ResponseKind::ListOffsets(response) => {
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::Metadata(response) => {
            code(response.error_code);
            for topic in &response.topics {
                code(topic.error_code);
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::ApiVersions(response) => code(response.error_code),
        ResponseKind::CreateTopics(response) => {
            response.topics.iter().for_each(|t| code(t.error_code))
        }
        ResponseKind::DeleteTopics(response) => {
            response.responses.iter().for_each(|t| code(t.error_code))
        }
        ResponseKind::DeleteRecords(response) => {
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::InitProducerId(response) => code(response.error_code),
        ResponseKind::OffsetForLeaderEpoch(response) => {
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::DescribeConfigs(response) => {
            response.results.iter().for_each(|r| code(r.error_code))
        }
        ResponseKind::CreatePartitions(response) => {
            response.results.iter().for_each(|r| code(r.error_code))
        }
        ResponseKind::DescribeCluster(response) => code(response.error_code),
        ResponseKind::FindCoordinator(response) => {
            // v4+ answers per key; before, at the top.
            if response.coordinators.is_empty() {
                code(response.error_code);
            }
            response
                .coordinators
                .iter()
                .for_each(|c| code(c.error_code));
        }
        ResponseKind::JoinGroup(response) => code(response.error_code),
        ResponseKind::SyncGroup(response) => code(response.error_code),
        ResponseKind::Heartbeat(response) => code(response.error_code),
        ResponseKind::LeaveGroup(response) => {
            code(response.error_code);
            response.members.iter().for_each(|m| code(m.error_code));
        }
        ResponseKind::OffsetCommit(response) => {
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::OffsetFetch(response) => {
            code(response.error_code);
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
            for group in &response.groups {
                code(group.error_code);
                for topic in &group.topics {
                    topic.partitions.iter().for_each(|p| code(p.error_code));
                }
            }
        }
        ResponseKind::ListGroups(response) => code(response.error_code),
        ResponseKind::DescribeGroups(response) => {
            response.groups.iter().for_each(|g| code(g.error_code))
        }
        ResponseKind::DeleteGroups(response) => {
            response.results.iter().for_each(|r| code(r.error_code))
        }
        ResponseKind::OffsetDelete(response) => {
            code(response.error_code);
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::AlterConfigs(response) => {
            response.responses.iter().for_each(|r| code(r.error_code))
        }
        ResponseKind::IncrementalAlterConfigs(response) => {
            response.responses.iter().for_each(|r| code(r.error_code))
        }
        ResponseKind::DescribeLogDirs(response) => {
            code(response.error_code);
            response.results.iter().for_each(|r| code(r.error_code));
        }
        ResponseKind::DescribeQuorum(response) => {
            code(response.error_code);
            for topic in &response.topics {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::ElectLeaders(response) => {
            code(response.error_code);
            for topic in &response.replica_election_results {
                topic
                    .partition_result
                    .iter()
                    .for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::AlterPartitionReassignments(response) => {
            code(response.error_code);
            for topic in &response.responses {
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::ListPartitionReassignments(response) => code(response.error_code),
        ResponseKind::DescribeTopicPartitions(response) => {
            for topic in &response.topics {
                code(topic.error_code);
                topic.partitions.iter().for_each(|p| code(p.error_code));
            }
        }
        ResponseKind::GetTelemetrySubscriptions(response) => code(response.error_code),
        ResponseKind::PushTelemetry(response) => code(response.error_code),
        ResponseKind::ConsumerGroupHeartbeat(response) => code(response.error_code),
        ResponseKind::ConsumerGroupDescribe(response) => {
            for group in &response.groups {
                code(group.error_code);
            }
        }
        // Every API Spate serves is listed above; another has nothing to count.
        _ => {}
    }
}

/// [`each_error`] of a Produce response (answered outside the common dispatch).
pub fn produce_errors(response: &ProduceResponse, mut each: impl FnMut(i16)) {
    for topic in &response.responses {
        for partition in &topic.partition_responses {
            if partition.error_code != 0 {
                each(partition.error_code);
            }
        }
    }
}

/// [`each_error`] of a Fetch response (encoded by the zero-copy path).
pub fn fetch_errors(response: &FetchResponse, mut each: impl FnMut(i16)) {
    if response.error_code != 0 {
        each(response.error_code);
    }
    for topic in &response.responses {
        for partition in &topic.partitions {
            if partition.error_code != 0 {
                each(partition.error_code);
            }
        }
    }
}

pub use spate_net::error_code::code_name as error_name;

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::produce_response::{
        PartitionProduceResponse, TopicProduceResponse,
    };

    #[test]
    fn names_are_kafkas() {
        assert_eq!(error_name(3), "UNKNOWN_TOPIC_OR_PARTITION");
        assert_eq!(error_name(6), "NOT_LEADER_OR_FOLLOWER");
        assert_eq!(error_name(-1), "UNKNOWN_SERVER_ERROR");
        assert_eq!(error_name(0), "NONE");
        assert_eq!(error_name(32000), "32000");
    }

    #[test]
    fn every_non_zero_code_counts_once() {
        let response =
            ProduceResponse::default().with_responses(vec![TopicProduceResponse::default()
                .with_partition_responses(vec![
                    PartitionProduceResponse::default().with_error_code(6),
                    PartitionProduceResponse::default(),
                    PartitionProduceResponse::default().with_error_code(6),
                    PartitionProduceResponse::default().with_error_code(3),
                ])]);
        let mut seen = Vec::new();
        each_error(&ResponseKind::Produce(response), |code| seen.push(code));
        assert_eq!(seen, [6, 6, 3]);
    }
}
