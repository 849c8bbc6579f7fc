//! `spate-bench sink`: a broker that acknowledges every produce request and keeps nothing.
//! Driving it measures the generator's own ceiling: how much load `spate-bench` can offer
//! on this host, which must stay well above what any broker under test takes.
//!
//! It answers just what the harness sends: CreateTopics, Metadata (itself as the leader of
//! every partition), Produce (success, or silence for acks=0), ListOffsets (offset 0) and
//! Fetch (empty). Like the generator it is event-driven: one glommio executor on one
//! thread, one task per connection, so a thousand connections measure the generator and
//! not a thousand sink threads.

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::os::fd::{FromRawFd, IntoRawFd};
use std::rc::Rc;

use anyhow::Context;
use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::{LocalExecutorBuilder, Placement};
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

use crate::run::pin_to;
use crate::wire::FrameBuffer;

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

/// Partition counts of the topics created so far (default 1). Owned by the sink's one
/// executor thread.
type Topics = Rc<RefCell<HashMap<String, i32>>>;

/// Receive buffer per connection: room for a 64 KiB produce request and the next one's
/// start (it grows for larger requests). A thousand connections hold 128 MiB.
const RECEIVE_BUFFER_BYTES: usize = 128 << 10;

/// Serves until killed.
pub fn run(args: &SinkArgs) -> anyhow::Result<()> {
    pin_to(&args.cpus)?;
    let listener = TcpListener::bind(args.listen)
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    eprintln!("spate-bench sink: listening on {}", listener.local_addr()?);
    serve(listener)
}

/// Accepts connections on `listener` forever, one task each, on the calling thread.
pub fn serve(listener: TcpListener) -> anyhow::Result<()> {
    let address = listener.local_addr()?;
    let executor = LocalExecutorBuilder::new(Placement::Unbound)
        .name("spate-bench-sink")
        .io_memory(1 << 20)
        .ring_depth(1024)
        .make()
        .map_err(|error| anyhow::anyhow!("cannot start the sink's executor: {error}"))?;
    executor.run(async move {
        // SAFETY: the descriptor comes from a listener we own and give up here.
        let listener = unsafe { glommio::net::TcpListener::from_raw_fd(listener.into_raw_fd()) };
        let topics: Topics = Rc::default();
        loop {
            let stream = listener.accept().await.map_err(std::io::Error::from)?;
            let topics = topics.clone();
            glommio::spawn_local(async move {
                // A connection ends when the client hangs up; nothing to report.
                let _ = serve_connection(stream, address, &topics).await;
            })
            .detach();
        }
    })
}

async fn serve_connection(
    mut stream: glommio::net::TcpStream,
    address: SocketAddr,
    topics: &Topics,
) -> anyhow::Result<()> {
    stream.set_nodelay(true).map_err(std::io::Error::from)?;
    let mut buffer = FrameBuffer::new(RECEIVE_BUFFER_BYTES);
    loop {
        let frame = Bytes::copy_from_slice(buffer.next_frame(&mut stream).await?);
        let request = spate_net::Request::decode_header(frame)?;
        let Some(response) = answer(&request.decode_body()?, address, topics) else {
            continue; // acks=0
        };
        let encoded = spate_net::encode_response(
            request.api_key,
            request.version(),
            request.header.correlation_id,
            &response,
        )?;
        stream.write_all(&encoded).await?;
    }
}

fn answer(request: &RequestKind, address: SocketAddr, topics: &Topics) -> Option<ResponseKind> {
    let partitions_of = |name: &str| topics.borrow().get(name).copied().unwrap_or(1);
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
            let mut known = topics.borrow_mut();
            for topic in &create.topics {
                known.insert(topic.name.to_string(), topic.num_partitions.max(1));
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
