//! The little admin the harness needs: make sure the topic exists, and learn which broker
//! leads each partition so every connection talks to a leader; delete what a scenario
//! wrote (the catch-up backlog).

use spate_net::error_code::{TOPIC_ALREADY_EXISTS, UNKNOWN_TOPIC_OR_PARTITION};
use std::collections::BTreeMap;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use anyhow::{bail, Context};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{
    CreateTopicsRequest, DeleteTopicsRequest, MetadataRequest, TopicName,
};
use kafka_protocol::protocol::StrBytes;

const TIMEOUT: Duration = Duration::from_secs(10);

/// Creates `topic` with `partitions` and `configs` (KEY=VALUE) unless it exists.
pub fn ensure_topic(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    configs: &[String],
) -> anyhow::Result<()> {
    let configs = configs
        .iter()
        .map(|config| {
            let Some((name, value)) = config.split_once('=') else {
                bail!("--topic-config takes KEY=VALUE, not {config:?}");
            };
            Ok(CreatableTopicConfig::default()
                .with_name(StrBytes::from_string(name.to_string()))
                .with_value(Some(StrBytes::from_string(value.to_string()))))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut client = crate::secure::client(bootstrap, TIMEOUT)?;
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(10_000)
        .with_topics(vec![CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(partitions)
            .with_replication_factor(-1)
            .with_configs(configs)]);
    let response = client.send(4, &request)?;
    for result in response.topics {
        if result.error_code != 0 && result.error_code != TOPIC_ALREADY_EXISTS {
            bail!(
                "cannot create topic {topic}: error {} {:?}",
                result.error_code,
                result.error_message
            );
        }
    }
    Ok(())
}

/// The leader address of each partition of `topic`, waiting briefly for a new topic's
/// leaders to appear.
pub fn partition_leaders(
    bootstrap: &str,
    topic: &str,
) -> anyhow::Result<BTreeMap<i32, SocketAddr>> {
    let mut client = crate::secure::client(bootstrap, TIMEOUT)?;
    for _attempt in 0..50 {
        let request =
            MetadataRequest::default().with_topics(Some(vec![MetadataRequestTopic::default()
                .with_name(Some(TopicName(StrBytes::from_string(topic.to_string()))))]));
        let response = client.send(4, &request)?;
        let brokers: BTreeMap<i32, SocketAddr> = response
            .brokers
            .iter()
            .filter_map(|broker| {
                (broker.host.to_string(), broker.port as u16)
                    .to_socket_addrs()
                    .ok()?
                    .next()
                    .map(|address| (broker.node_id.0, address))
            })
            .collect();
        let Some(topic_metadata) = response.topics.first() else {
            bail!("the broker returned no metadata for {topic}");
        };
        let leaders: Option<BTreeMap<i32, SocketAddr>> = topic_metadata
            .partitions
            .iter()
            .map(|partition| {
                brokers
                    .get(&partition.leader_id.0)
                    .map(|address| (partition.partition_index, *address))
            })
            .collect();
        match leaders {
            Some(leaders) if topic_metadata.error_code == 0 && !leaders.is_empty() => {
                return Ok(leaders)
            }
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
    Err(anyhow::anyhow!("no leaders for {topic}")).context("metadata never settled")
}

/// Deletes `topic`; a topic that does not exist is not an error.
pub fn delete_topic(bootstrap: &str, topic: &str) -> anyhow::Result<()> {
    let mut client = crate::secure::client(bootstrap, TIMEOUT)?;
    let request = DeleteTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topic_names(vec![TopicName(StrBytes::from_string(topic.to_string()))]);
    let response = client.send(4, &request)?;
    for result in response.responses {
        if result.error_code != 0 && result.error_code != UNKNOWN_TOPIC_OR_PARTITION {
            bail!("cannot delete topic {topic}: error {}", result.error_code);
        }
    }
    Ok(())
}
