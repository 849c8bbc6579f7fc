//! Request versions kafka-protocol no longer codes, which old clients still send: ListOffsets
//! v0 (Kafka 4 removed it, KIP-896, but Burrow 1.2 and other Sarama-1.2x-era tools ask with
//! it whatever Kafka version they are told).
//!
//! ListOffsets v0 differs from v1 only in asking for up to `max_num_offsets` offsets per
//! partition and answering a list of them (`old_style_offsets`, segment base offsets in old
//! Kafka); the broker answers with the one offset v1 would give (none when the lookup found
//! none, or when zero were asked for), which is all these tools read. The request becomes a
//! v1 request for the handler, and the handler's response is written back in v0's shape.
//! Non-flexible: classic strings and arrays, response header v0.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::{
    ApiKey, BrokerId, ListOffsetsRequest, ListOffsetsResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;

use crate::codec::RequestError;

/// A ListOffsets v0 body as the v1 request the handler serves, and whether each partition
/// (in request order) asked for at least one offset.
pub fn decode_list_offsets_v0(
    mut body: Bytes,
) -> Result<(ListOffsetsRequest, Vec<bool>), RequestError> {
    let malformed = |reason: &str| RequestError::MalformedBody {
        api_key: ApiKey::ListOffsets,
        version: 0,
        reason: reason.to_string(),
    };
    let replica_id = get_i32(&mut body).ok_or_else(|| malformed("no replica id"))?;
    let topic_count = get_count(&mut body, 2 + 4).ok_or_else(|| malformed("bad topic count"))?;
    let mut topics = Vec::with_capacity(topic_count);
    let mut wanted = Vec::new();
    for _ in 0..topic_count {
        let name = get_string(&mut body).ok_or_else(|| malformed("bad topic name"))?;
        let partition_count =
            get_count(&mut body, 4 + 8 + 4).ok_or_else(|| malformed("bad partition count"))?;
        let mut partitions = Vec::with_capacity(partition_count);
        for _ in 0..partition_count {
            if body.remaining() < 16 {
                return Err(malformed("truncated partition"));
            }
            let index = body.get_i32();
            let timestamp = body.get_i64();
            let max_num_offsets = body.get_i32();
            wanted.push(max_num_offsets > 0);
            partitions.push(
                ListOffsetsPartition::default()
                    .with_partition_index(index)
                    .with_current_leader_epoch(-1)
                    .with_timestamp(timestamp),
            );
        }
        topics.push(
            ListOffsetsTopic::default()
                .with_name(TopicName(StrBytes::from_string(name)))
                .with_partitions(partitions),
        );
    }
    if body.has_remaining() {
        return Err(malformed("bytes after the body"));
    }
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(replica_id))
        .with_topics(topics);
    Ok((request, wanted))
}

/// A ListOffsets v0 response frame (size prefix, header v0, body) from the handler's answer.
pub fn encode_list_offsets_v0(
    correlation_id: i32,
    response: &ListOffsetsResponse,
    wanted: &[bool],
) -> BytesMut {
    let mut frame = BytesMut::with_capacity(64);
    frame.put_i32(0);
    frame.put_i32(correlation_id);
    frame.put_i32(response.topics.len() as i32);
    let mut wanted = wanted.iter();
    for topic in &response.topics {
        put_string(&mut frame, topic.name.0.as_str());
        frame.put_i32(topic.partitions.len() as i32);
        for partition in &topic.partitions {
            frame.put_i32(partition.partition_index);
            frame.put_i16(partition.error_code);
            let asked = wanted.next().copied().unwrap_or(true);
            if asked && partition.error_code == 0 && partition.offset >= 0 {
                frame.put_i32(1);
                frame.put_i64(partition.offset);
            } else {
                frame.put_i32(0);
            }
        }
    }
    let size = (frame.len() - 4) as i32;
    frame[0..4].copy_from_slice(&size.to_be_bytes());
    frame
}

fn get_i32(body: &mut Bytes) -> Option<i32> {
    (body.remaining() >= 4).then(|| body.get_i32())
}

/// An array length, refused when negative or when the rest could not hold that many entries
/// of at least `entry_bytes` each (a lying count never allocates).
fn get_count(body: &mut Bytes, entry_bytes: usize) -> Option<usize> {
    let count = usize::try_from(get_i32(body)?).ok()?;
    (count.checked_mul(entry_bytes)? <= body.remaining()).then_some(count)
}

fn get_string(body: &mut Bytes) -> Option<String> {
    if body.remaining() < 2 {
        return None;
    }
    let length = usize::try_from(body.get_i16()).ok()?;
    if body.remaining() < length {
        return None;
    }
    let text = std::str::from_utf8(&body[..length]).ok()?.to_string();
    body.advance(length);
    Some(text)
}

fn put_string(frame: &mut BytesMut, text: &str) {
    let length = i16::try_from(text.len()).unwrap_or(i16::MAX);
    frame.put_i16(length);
    frame.put_slice(&text.as_bytes()[..length as usize]);
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::list_offsets_response::{
        ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
    };

    fn v0_body(topic: &str, partitions: &[(i32, i64, i32)]) -> Bytes {
        let mut body = BytesMut::new();
        body.put_i32(-1);
        body.put_i32(1);
        put_string(&mut body, topic);
        body.put_i32(partitions.len() as i32);
        for &(partition, timestamp, max) in partitions {
            body.put_i32(partition);
            body.put_i64(timestamp);
            body.put_i32(max);
        }
        body.freeze()
    }

    #[test]
    fn a_v0_request_becomes_v1_and_its_answer_a_list_of_one_offset() {
        let (request, wanted) =
            decode_list_offsets_v0(v0_body("t", &[(0, -1, 1), (1, -2, 0)])).expect("decoded");
        assert_eq!(request.replica_id, BrokerId(-1));
        let partitions = &request.topics[0].partitions;
        assert_eq!(
            partitions
                .iter()
                .map(|p| (p.partition_index, p.timestamp))
                .collect::<Vec<_>>(),
            [(0, -1), (1, -2)]
        );
        assert_eq!(wanted, [true, false]);
        let response =
            ListOffsetsResponse::default().with_topics(vec![ListOffsetsTopicResponse::default()
                .with_name(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(0)
                        .with_offset(42),
                    ListOffsetsPartitionResponse::default()
                        .with_partition_index(1)
                        .with_offset(0),
                ])]);
        let frame = encode_list_offsets_v0(7, &response, &wanted);
        let mut expected = BytesMut::new();
        expected.put_i32(7);
        expected.put_i32(1);
        put_string(&mut expected, "t");
        expected.put_i32(2);
        expected.put_slice(&[0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
        expected.put_i64(42);
        expected.put_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&frame[4..], &expected[..]);
        assert_eq!(&frame[..4], &(expected.len() as i32).to_be_bytes());
    }

    #[test]
    fn lying_counts_and_truncated_bodies_are_refused() {
        let mut body = BytesMut::new();
        body.put_i32(-1);
        body.put_i32(i32::MAX);
        assert!(decode_list_offsets_v0(body.freeze()).is_err());
        let whole = v0_body("t", &[(0, -1, 1)]);
        for cut in 0..whole.len() {
            assert!(
                decode_list_offsets_v0(whole.slice(..cut)).is_err(),
                "cut at {cut}"
            );
        }
        let mut longer = BytesMut::from(&whole[..]);
        longer.put_u8(0);
        assert!(decode_list_offsets_v0(longer.freeze()).is_err());
    }
}
