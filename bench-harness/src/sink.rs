//! `spate-bench sink`: a broker that acknowledges every produce request and keeps nothing.
//! Driving it measures the generator's own ceiling: how much load `spate-bench` can offer
//! on this host, which must stay well above what any broker under test takes.
//!
//! It answers just what the harness sends: CreateTopics, Metadata (itself as the leader of
//! every partition), Produce (success, or silence for acks=0), ListOffsets (offset 0) and
//! Fetch (empty). One thread per connection.

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use kafka_protocol::messages::create_topics_response::CreatableTopicResult;
use kafka_protocol::messages::fetch_response::FetchableTopicResponse;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{
    BrokerId, CreateTopicsResponse, FetchResponse, ListOffsetsResponse, MetadataResponse,
    ProduceResponse, RequestKind, ResponseKind,
};
use kafka_protocol::protocol::StrBytes;

use crate::produce::read_frame;
use crate::run::pin_to;

/// Flags of `spate-bench sink`.
#[derive(clap::Args, Clone, Debug)]
pub struct SinkArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:19999")]
    pub listen: SocketAddr,
    /// Pin the sink's threads to these CPUs.
    #[arg(long, value_delimiter = ',')]
    pub cpus: Vec<usize>,
}

/// Partition counts of the topics created so far (default 1).
type Topics = Arc<Mutex<HashMap<String, i32>>>;

/// Serves until killed.
pub fn run(args: &SinkArgs) -> anyhow::Result<()> {
    pin_to(&args.cpus)?;
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("spate-bench sink: listening on {}", listener.local_addr()?);
    serve(listener)
}

/// Accepts connections on `listener` forever, one thread each.
pub fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let topics: Topics = Arc::default();
    for stream in listener.incoming() {
        let stream = stream?;
        let topics = topics.clone();
        std::thread::spawn(move || {
            // A connection ends when the client hangs up; nothing to report.
            let _ = serve_connection(stream, address, &topics);
        });
    }
    Ok(())
}

fn serve_connection(
    mut stream: TcpStream,
    address: SocketAddr,
    topics: &Topics,
) -> anyhow::Result<()> {
    stream.set_nodelay(true)?;
    let mut frame = Vec::new();
    loop {
        read_frame(&mut stream, &mut frame)?;
        let request = spate_net::Request::decode_header(Bytes::from(std::mem::take(&mut frame)))?;
        let Some(response) = answer(&request.decode_body()?, address, topics) else {
            continue; // acks=0
        };
        let encoded = spate_net::encode_response(
            request.api_key,
            request.version(),
            request.header.correlation_id,
            &response,
        )?;
        stream.write_all(&encoded)?;
    }
}

fn answer(request: &RequestKind, address: SocketAddr, topics: &Topics) -> Option<ResponseKind> {
    let partitions_of = |name: &str| {
        topics
            .lock()
            .map_or(1, |topics| topics.get(name).copied().unwrap_or(1))
    };
    Some(match request {
        RequestKind::Produce(produce) => {
            if produce.acks == 0 {
                return None;
            }
            ResponseKind::Produce(
                ProduceResponse::default().with_responses(
                    produce
                        .topic_data
                        .iter()
                        .map(|topic| {
                            TopicProduceResponse::default()
                                .with_name(topic.name.clone())
                                .with_partition_responses(
                                    topic
                                        .partition_data
                                        .iter()
                                        .map(|partition| {
                                            PartitionProduceResponse::default()
                                                .with_index(partition.index)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
            )
        }
        RequestKind::CreateTopics(create) => {
            if let Ok(mut known) = topics.lock() {
                for topic in &create.topics {
                    known.insert(topic.name.to_string(), topic.num_partitions.max(1));
                }
            }
            ResponseKind::CreateTopics(
                CreateTopicsResponse::default().with_topics(
                    create
                        .topics
                        .iter()
                        .map(|topic| CreatableTopicResult::default().with_name(topic.name.clone()))
                        .collect(),
                ),
            )
        }
        RequestKind::Metadata(metadata) => {
            let broker = MetadataResponseBroker::default()
                .with_node_id(BrokerId(0))
                .with_host(StrBytes::from_string(address.ip().to_string()))
                .with_port(i32::from(address.port()));
            let topics = metadata
                .topics
                .iter()
                .flatten()
                .filter_map(|topic| topic.name.clone())
                .map(|name| {
                    let partitions = (0..partitions_of(&name))
                        .map(|index| {
                            MetadataResponsePartition::default()
                                .with_partition_index(index)
                                .with_leader_id(BrokerId(0))
                                .with_replica_nodes(vec![BrokerId(0)])
                                .with_isr_nodes(vec![BrokerId(0)])
                        })
                        .collect();
                    MetadataResponseTopic::default()
                        .with_name(Some(name))
                        .with_partitions(partitions)
                });
            ResponseKind::Metadata(
                MetadataResponse::default()
                    .with_brokers(vec![broker])
                    .with_topics(topics.collect()),
            )
        }
        RequestKind::ListOffsets(list) => ResponseKind::ListOffsets(
            ListOffsetsResponse::default().with_topics(
                list.topics
                    .iter()
                    .map(|topic| {
                        ListOffsetsTopicResponse::default()
                            .with_name(topic.name.clone())
                            .with_partitions(
                                topic
                                    .partitions
                                    .iter()
                                    .map(|partition| {
                                        ListOffsetsPartitionResponse::default()
                                            .with_partition_index(partition.partition_index)
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            ),
        ),
        RequestKind::Fetch(_) => ResponseKind::Fetch(
            FetchResponse::default().with_responses(Vec::<FetchableTopicResponse>::new()),
        ),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::args::{parse_words, ProduceCommand};

    #[test]
    fn generator_drives_the_sink() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let address = listener.local_addr().unwrap();
        std::thread::spawn(move || serve(listener));
        let words: Vec<String> = format!(
            "--brokers {address} --topic sink --partitions 2 --producers 2 --duration 1 --warmup 0.2 --quiet --rate 2000"
        )
        .split_whitespace()
        .map(String::from)
        .collect();
        let command: ProduceCommand = parse_words(&words).unwrap();
        let result = crate::run::run_produce(&command).unwrap();
        assert_eq!(result.errors, 0);
        // Open loop at 2000 records/s for 1 s: 2000 records, give or take a request.
        assert!(
            (1800.0..=2200.0).contains(&result.records_per_s),
            "{}",
            result.records_per_s
        );
        assert!(result.latency_us.count > 0);
    }
}
