//! Reading a large Produce request so that its record batches are received once: from the
//! socket straight into the DMA chunks the flusher writes them from.
//!
//! The connection's [`FrameReader`] hands out large Produce frames as a stream
//! ([`crate::NextFrame::Streamed`]). This module walks the request's fields as they
//! arrive, copying them into a "skeleton" of the request, until it meets a partition's
//! records: a batch of [`RECEIVED_BATCH_BYTES_MIN`] or more is read into memory the caller's
//! [`BatchSink`] provides (the engine's: DMA chunks, placed where the partition's log says the
//! batch will start within a disk block), and the skeleton gets an empty records field in its
//! place. Smaller batches stay
//! in the skeleton. The skeleton is then decoded and handled like any request; the produce
//! handler takes each partition's batch from the received ones by its place in the request.
//!
//! The whole frame is read before anything is appended, as for any request: a client that
//! hangs up or lies about a length mid-request leaves nothing behind (its chunks go back to the
//! pool), and the connection is closed with one log line.

use bytes::{BufMut, BytesMut};
use futures_lite::AsyncRead;

use crate::frame::{FrameError, FrameReader};
use crate::wire::{nullable_length, Uvarint, UvarintDecoder, UVARINT_BYTES_MAX};

/// Batches this size or more are received into the sink's memory; smaller ones are read with
/// the request's fields and copied once more when appended, which costs less than their own
/// reads.
pub const RECEIVED_BATCH_BYTES_MIN: usize = crate::frame::STREAMED_BUFFERED_BYTES;

/// Produce versions whose layout this module walks (the ones the broker serves); frames of
/// other versions are read whole and refused by the dispatcher as usual.
const WALKED_VERSIONS: std::ops::RangeInclusive<i16> = 3..=12;
/// The first flexible (KIP-482) Produce version.
const FIRST_FLEXIBLE_VERSION: i16 = 9;

/// Partitions' batches received into a sink's memory, by their place in the request: (topic
/// index, partition index).
pub type ReceivedBatches<B> = Vec<((usize, usize), B)>;

/// Where the large batches of a streamed Produce are received.
pub trait BatchSink {
    /// A batch being received, then received.
    type Batch;
    /// Begins a batch of `bytes` for a partition. Memory should be taken as parts are asked
    /// for, not all at once: a batch that claims 100 MB and sends 10 bytes must cost little.
    fn begin(&self, topic: &str, partition: i32, bytes: usize) -> Self::Batch;
    /// The next part of `batch` to fill, `None` once it is whole.
    fn next_part<'batch>(&self, batch: &'batch mut Self::Batch) -> Option<&'batch mut [u8]>;
}

/// Why a streamed Produce request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The socket failed or the client hung up mid-request.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A length in the request is impossible (runs past the frame's end, or is negative).
    #[error("malformed Produce request: {0}")]
    Malformed(String),
}

/// A large Produce request as read: the request without its received batches, and those.
pub struct StreamedProduce<B> {
    /// The request, with an empty records field where a batch was received.
    pub skeleton: bytes::Bytes,
    /// The batches received into the sink's memory.
    pub received: ReceivedBatches<B>,
    /// The frame's size, for the request counters.
    pub frame_bytes: usize,
}

/// Reads the streamed frame of `frame_bytes` that `frames` is at, receiving its large batches
/// into `sink`.
pub async fn read<R: AsyncRead + Unpin, S: BatchSink>(
    sink: &S,
    frames: &mut FrameReader,
    stream: &mut R,
    frame_bytes: usize,
) -> Result<StreamedProduce<S::Batch>, StreamError> {
    let mut walker = Walker {
        frames,
        stream,
        skeleton: BytesMut::with_capacity(1024),
        received: Vec::new(),
    };
    walker.walk(sink).await?;
    // Anything after the fields we know (there should be nothing) stays in the skeleton for
    // the decoder to judge.
    let rest = walker.frames.streamed_remaining();
    walker.copy(rest).await?;
    Ok(StreamedProduce {
        skeleton: walker.skeleton.freeze(),
        received: walker.received,
        frame_bytes,
    })
}

struct Walker<'a, R, B> {
    frames: &'a mut FrameReader,
    stream: &'a mut R,
    skeleton: BytesMut,
    received: ReceivedBatches<B>,
}

impl<R: AsyncRead + Unpin, B> Walker<'_, R, B> {
    async fn walk<S: BatchSink<Batch = B>>(&mut self, sink: &S) -> Result<(), StreamError> {
        let _api_key = self.i16().await?;
        let version = self.i16().await?;
        if !WALKED_VERSIONS.contains(&version) {
            return Ok(());
        }
        let flexible = version >= FIRST_FLEXIBLE_VERSION;
        self.i32().await?; // correlation id
        let client_id = self.i16().await?; // a nullable string, not compact even in v2 headers
        self.copy(length(client_id.into())?).await?;
        if flexible {
            self.tagged_fields().await?;
        }
        self.string(flexible).await?; // transactional id
        self.i16().await?; // acks
        self.i32().await?; // timeout
        let topics = self.array_length(flexible).await?;
        for topic_index in 0..topics {
            let name = self.string(flexible).await?;
            let partitions = self.array_length(flexible).await?;
            for partition_index in 0..partitions {
                let partition = self.i32().await?;
                self.records(
                    sink,
                    flexible,
                    &name,
                    partition,
                    (topic_index, partition_index),
                )
                .await?;
                if flexible {
                    self.tagged_fields().await?;
                }
            }
            if flexible {
                self.tagged_fields().await?;
            }
        }
        if flexible {
            self.tagged_fields().await?;
        }
        Ok(())
    }

    /// A partition's records: received into DMA chunks if large, else copied with the rest.
    async fn records<S: BatchSink<Batch = B>>(
        &mut self,
        sink: &S,
        flexible: bool,
        topic: &str,
        partition: i32,
        slot: (usize, usize),
    ) -> Result<(), StreamError> {
        let mut prefix = [0u8; UVARINT_BYTES_MAX];
        let (prefix_bytes, records_bytes) = if flexible {
            let (encoded, value) = self.read_uvarint(&mut prefix).await?;
            (encoded, i64::from(value) - 1)
        } else {
            self.read(&mut prefix[..4]).await?;
            let value = i32::from_be_bytes([prefix[0], prefix[1], prefix[2], prefix[3]]);
            (4, i64::from(value))
        };
        let Ok(records_bytes) = usize::try_from(records_bytes) else {
            // Null records (-1) are the handler's to refuse; other negatives are malformed.
            if records_bytes < -1 {
                return Err(StreamError::Malformed(format!(
                    "records length {records_bytes}"
                )));
            }
            self.skeleton.put_slice(&prefix[..prefix_bytes]);
            return Ok(());
        };
        let remaining = self.frames.streamed_remaining();
        if records_bytes > remaining {
            return Err(StreamError::Malformed(format!(
                "records of {records_bytes} bytes in the {remaining} left of the frame"
            )));
        }
        if records_bytes < RECEIVED_BATCH_BYTES_MIN {
            self.skeleton.put_slice(&prefix[..prefix_bytes]);
            return self.copy(records_bytes).await;
        }
        // The sink takes memory a part at a time as the batch arrives (see `BatchSink`).
        let mut batch = sink.begin(topic, partition, records_bytes);
        while let Some(part) = sink.next_part(&mut batch) {
            self.frames.read_streamed(self.stream, part).await?;
        }
        // An empty records field marks the place of the received batch.
        if flexible {
            self.skeleton.put_u8(1);
        } else {
            self.skeleton.put_i32(0);
        }
        self.received.push((slot, batch));
        Ok(())
    }

    /// Refuses a field of `bytes` that would run past the frame's end: every length is
    /// checked here before anything is read or allocated for it.
    fn check_fits(&self, bytes: usize) -> Result<(), StreamError> {
        let remaining = self.frames.streamed_remaining();
        if bytes > remaining {
            return Err(StreamError::Malformed(format!(
                "a field of {bytes} bytes in the {remaining} left of the frame"
            )));
        }
        Ok(())
    }

    /// Reads `target.len()` bytes of the frame, refusing to run past its end.
    async fn read(&mut self, target: &mut [u8]) -> Result<(), StreamError> {
        self.check_fits(target.len())?;
        Ok(self.frames.read_streamed(self.stream, target).await?)
    }

    /// Copies `bytes` bytes of the frame into the skeleton. The length comes from the client
    /// (up to 4 GiB in a uvarint): it is checked against the frame first, and the skeleton
    /// grows a piece at a time as the bytes arrive, so a tagged field claiming 100 MB costs
    /// only what is sent.
    async fn copy(&mut self, bytes: usize) -> Result<(), StreamError> {
        const PIECE_BYTES: usize = 64 * 1024;
        self.check_fits(bytes)?;
        let mut left = bytes;
        while left > 0 {
            let piece = left.min(PIECE_BYTES);
            let start = self.skeleton.len();
            self.skeleton.resize(start + piece, 0);
            let mut target = self.skeleton.split_off(start);
            let result = self.read(&mut target).await;
            self.skeleton.unsplit(target);
            result?;
            left -= piece;
        }
        Ok(())
    }

    async fn i16(&mut self) -> Result<i16, StreamError> {
        let mut bytes = [0u8; 2];
        self.read(&mut bytes).await?;
        self.skeleton.put_slice(&bytes);
        Ok(i16::from_be_bytes(bytes))
    }

    async fn i32(&mut self) -> Result<i32, StreamError> {
        let mut bytes = [0u8; 4];
        self.read(&mut bytes).await?;
        self.skeleton.put_slice(&bytes);
        Ok(i32::from_be_bytes(bytes))
    }

    /// An unsigned varint, not copied: its bytes and value.
    async fn read_uvarint(
        &mut self,
        encoded: &mut [u8; UVARINT_BYTES_MAX],
    ) -> Result<(usize, u32), StreamError> {
        let mut decoder = UvarintDecoder::default();
        for at in 0..encoded.len() {
            self.read(&mut encoded[at..at + 1]).await?;
            match decoder.push(encoded[at]) {
                Uvarint::Incomplete => {}
                Uvarint::Done(value) => return Ok((at + 1, value)),
                Uvarint::TooLong => break,
            }
        }
        Err(StreamError::Malformed("varint longer than 5 bytes".into()))
    }

    async fn uvarint(&mut self) -> Result<u32, StreamError> {
        let mut encoded = [0u8; UVARINT_BYTES_MAX];
        let (bytes, value) = self.read_uvarint(&mut encoded).await?;
        self.skeleton.put_slice(&encoded[..bytes]);
        Ok(value)
    }

    /// A string (compact in flexible versions), copied; its bytes are returned for the topic
    /// name (lossily: a name that is not UTF-8 is refused by the decoder later).
    async fn string(&mut self, flexible: bool) -> Result<String, StreamError> {
        let bytes = if flexible {
            length(i64::from(self.uvarint().await?) - 1)?
        } else {
            length(self.i16().await?.into())?
        };
        let start = self.skeleton.len();
        self.copy(bytes).await?;
        Ok(String::from_utf8_lossy(&self.skeleton[start..]).into_owned())
    }

    /// An array's element count (compact in flexible versions), copied.
    async fn array_length(&mut self, flexible: bool) -> Result<usize, StreamError> {
        let count = if flexible {
            i64::from(self.uvarint().await?) - 1
        } else {
            self.i32().await?.into()
        };
        // Each element takes at least one byte: a count beyond what is left is a lie.
        let count = length(count)?;
        if count > self.frames.streamed_remaining() {
            return Err(StreamError::Malformed(format!(
                "{count} elements in the {} bytes left of the frame",
                self.frames.streamed_remaining()
            )));
        }
        Ok(count)
    }

    /// Tagged fields (KIP-482), copied.
    async fn tagged_fields(&mut self) -> Result<(), StreamError> {
        let count = self.uvarint().await?;
        for _ in 0..count {
            self.uvarint().await?; // tag
            let size = self.uvarint().await? as usize;
            self.copy(size).await?;
        }
        Ok(())
    }
}

/// A length that may be -1 (null: no bytes); any other negative is malformed.
fn length(value: i64) -> Result<usize, StreamError> {
    nullable_length(value).ok_or_else(|| StreamError::Malformed(format!("negative length {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use futures_lite::future::block_on;
    use futures_lite::io::Cursor;
    use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
    use kafka_protocol::messages::{ApiKey, ProduceRequest, RequestHeader, RequestKind, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use proptest::prelude::*;

    /// A Produce request whose records are patterned bytes (the walker does not parse
    /// batches) of the given sizes; `None` for null records.
    fn request(topics: &[(String, Vec<Option<usize>>)]) -> ProduceRequest {
        ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(1000)
            .with_topic_data(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        TopicProduceData::default()
                            .with_name(TopicName(StrBytes::from_string(name.clone())))
                            .with_partition_data(
                                partitions
                                    .iter()
                                    .enumerate()
                                    .map(|(index, size)| {
                                        let records = size.map(|size| {
                                            (0..size)
                                                .map(|at| (at * 31 + index) as u8)
                                                .collect::<Vec<u8>>()
                                        });
                                        PartitionProduceData::default()
                                            .with_index(index as i32)
                                            .with_records(records.map(Bytes::from))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            )
    }

    fn frame(version: i16, request: &ProduceRequest) -> Vec<u8> {
        let header = RequestHeader::default()
            .with_request_api_key(ApiKey::Produce as i16)
            .with_request_api_version(version)
            .with_correlation_id(7)
            .with_client_id(Some(StrBytes::from_static_str("walker-test")));
        crate::codec::encode_request(&header, ApiKey::Produce, request)
            .unwrap()
            .to_vec()
    }

    /// Receives batches into vectors, in parts of up to 4 KiB as the engine's chunks do.
    struct VecSink;

    /// A batch and how much of it is filled.
    struct VecBatch(Vec<u8>, usize);

    impl BatchSink for VecSink {
        type Batch = VecBatch;

        fn begin(&self, _: &str, _: i32, bytes: usize) -> VecBatch {
            VecBatch(vec![0; bytes], 0)
        }

        fn next_part<'batch>(&self, batch: &'batch mut VecBatch) -> Option<&'batch mut [u8]> {
            let start = batch.1;
            let end = batch.0.len().min(start + 4096);
            batch.1 = end;
            (start < end).then(|| &mut batch.0[start..end])
        }
    }

    /// Walks `bytes` as the connection does; `None` if the frame is not streamed.
    fn walk(bytes: Vec<u8>) -> Option<Result<StreamedProduce<VecBatch>, StreamError>> {
        let mut stream = Cursor::new(bytes);
        let mut frames = FrameReader::new(1 << 26).stream_api_key(ApiKey::Produce as i16);
        block_on(async {
            match frames.next(&mut stream).await {
                Ok(Some(crate::NextFrame::Streamed(size))) => {
                    let read = read(&VecSink, &mut frames, &mut stream, size).await;
                    if read.is_ok() {
                        assert_eq!(
                            frames.streamed_remaining(),
                            0,
                            "the frame is read to its end"
                        );
                    }
                    Some(read)
                }
                _ => None,
            }
        })
    }

    fn shapes() -> impl Strategy<Value = Vec<(String, Vec<Option<usize>>)>> {
        let partition = prop_oneof![
            1 => Just(None),
            4 => (0usize..5_000).prop_map(Some),
            3 => (5_000usize..300_000).prop_map(Some),
        ];
        let topic = ("[a-z]{1,12}", proptest::collection::vec(partition, 1..5));
        proptest::collection::vec(topic, 1..4).prop_map(|mut topics| {
            // At least one batch too large for the read-ahead buffer, so the frame streams.
            topics[0].1[0] = Some(70_000);
            topics
        })
    }

    #[test]
    fn a_length_beyond_the_frame_is_refused_before_anything_is_allocated() {
        // A streamed frame of about 100 KB; a field that claims 64 MiB of it (a v9+ tagged
        // field or compact string says so in a uvarint) must not grow the skeleton first.
        let bytes = frame(9, &request(&[("t".to_string(), vec![Some(100_000)])]));
        let mut stream = Cursor::new(bytes);
        let mut frames = FrameReader::new(1 << 26).stream_api_key(ApiKey::Produce as i16);
        block_on(async {
            let Ok(Some(crate::NextFrame::Streamed(_))) = frames.next(&mut stream).await else {
                panic!("a large produce is streamed")
            };
            let mut walker = Walker::<_, VecBatch> {
                frames: &mut frames,
                stream: &mut stream,
                skeleton: BytesMut::new(),
                received: Vec::new(),
            };
            let claimed = 64 << 20;
            assert!(matches!(
                walker.copy(claimed).await,
                Err(StreamError::Malformed(_))
            ));
            assert!(
                walker.skeleton.capacity() < 1 << 20,
                "{} bytes reserved for a lie",
                walker.skeleton.capacity()
            );
        });
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]

        #[test]
        fn the_skeleton_and_the_received_batches_are_the_request(
            topics in shapes(),
            version in 3i16..=12,
        ) {
            let sent = request(&topics);
            let streamed = walk(frame(version, &sent)).expect("streamed").expect("walked");
            let decoded = crate::Request::decode_header(streamed.skeleton.clone()).unwrap();
            let RequestKind::Produce(skeleton) = decoded.decode_body().unwrap() else {
                panic!("not a produce request")
            };
            let mut received = streamed.received.into_iter().peekable();
            for (topic_index, (topic, original)) in
                skeleton.topic_data.iter().zip(&sent.topic_data).enumerate()
            {
                prop_assert_eq!(&topic.name, &original.name);
                for (partition_index, (partition, original)) in
                    topic.partition_data.iter().zip(&original.partition_data).enumerate()
                {
                    let slot = (topic_index, partition_index);
                    let records = match received.next_if(|(at, _)| *at == slot) {
                        Some((_, batch)) => {
                            prop_assert!(batch.0.len() >= RECEIVED_BATCH_BYTES_MIN);
                            prop_assert_eq!(batch.1, batch.0.len(), "filled to its end");
                            prop_assert_eq!(partition.records.as_deref(), Some(&[][..]));
                            Some(Bytes::from(batch.0))
                        }
                        None => partition.records.clone(),
                    };
                    prop_assert_eq!(records, original.records.clone());
                }
            }
            prop_assert!(received.next().is_none());
        }

        #[test]
        fn cut_or_damaged_requests_are_refused_not_panicked_on(
            topics in shapes(),
            version in 3i16..=12,
            cut in any::<proptest::sample::Index>(),
            flip in any::<proptest::sample::Index>(),
            damage in any::<u8>(),
        ) {
            let bytes = frame(version, &request(&topics));
            // Cut short with the size prefix made to match: lengths inside now lie.
            let mut cut_bytes = bytes[..4 + cut.index(bytes.len() - 4)].to_vec();
            let size = (cut_bytes.len() - 4) as i32;
            cut_bytes[..4].copy_from_slice(&size.to_be_bytes());
            let _ = walk(cut_bytes);
            // One byte changed anywhere after the size prefix.
            let mut damaged = bytes;
            let at = 4 + flip.index(damaged.len() - 4);
            damaged[at] ^= damage | 1;
            let _ = walk(damaged);
        }
    }
}
