"""Defects found when Spate was tried as a new user would (issue 14), each shown by a real
client."""

from __future__ import annotations

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from confluent_helpers import create_topic


def test_offset_commit_for_a_missing_topic_or_partition_is_refused_per_partition(broker, unique_topic):
    topic = unique_topic("real")
    create_topic(broker.bootstrap, topic, 2)
    consumer = Consumer({"bootstrap.servers": broker.bootstrap, "group.id": unique_topic("group"),
                         "enable.auto.commit": False})
    try:
        offsets = [TopicPartition(topic, 0, 5), TopicPartition(topic, 7, 5),
                   TopicPartition(unique_topic("missing"), 0, 5)]
        try:
            answered = consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException:
            answered = None  # librdkafka may raise when a partition failed; checked below
        if answered is not None:
            by_partition = {(tp.topic, tp.partition): tp.error for tp in answered}
            assert by_partition[(topic, 0)] is None
            refused = by_partition[(topic, 7)]
            assert refused is not None, "a commit for a partition that does not exist succeeded"
            assert refused.code() == KafkaError.UNKNOWN_TOPIC_OR_PART, refused
        committed = consumer.committed([TopicPartition(topic, 0), TopicPartition(topic, 7)],
                                       timeout=10)
        offsets_by_partition = {tp.partition: tp.offset for tp in committed}
        assert offsets_by_partition[0] == 5
        assert offsets_by_partition[7] < 0, "an offset was committed for a partition that does not exist"
    finally:
        consumer.close()


def test_keyless_records_on_a_compacted_topic_are_named_in_record_errors(broker, unique_topic):
    """KIP-467: the broker says which records of the batch it refused (Produce v8)."""
    import struct

    from confluent_kafka.admin import AdminClient, NewTopic
    from kafka.protocol.api import RequestHeader
    from kafka.protocol.produce import ProduceRequest
    from kafka.record.default_records import DefaultRecordBatchBuilder

    import kafka_wire as wire

    topic = unique_topic("compacted")
    admin = AdminClient({"bootstrap.servers": broker.bootstrap})
    admin.create_topics([NewTopic(topic, 1, 1, config={"cleanup.policy": "compact"})])[topic].result(20)
    builder = DefaultRecordBatchBuilder(magic=2, compression_type=0, is_transactional=0,
                                        producer_id=-1, producer_epoch=-1, base_sequence=-1,
                                        batch_size=1 << 20)
    for offset, key in enumerate([b"a", None, b"c", None]):
        builder.append(offset, timestamp=1_700_000_000_000, key=key, value=b"v", headers=[])
    records = bytes(builder.build())
    request = ProduceRequest[8](transactional_id=None, required_acks=-1, timeout=10_000,
                                topics=[(topic, [(0, records)])])
    header = RequestHeader(request, correlation_id=3, client_id="spate-defects")
    metadata = admin.list_topics(topic, timeout=10).topics[topic].partitions[0]
    port = broker.ports[metadata.leader % 1024]
    with wire.connect(port) as sock:
        sock.sendall(wire.frame(header.encode() + request.encode()))
        body = wire.read_frame(sock)
    assert struct.unpack_from(">i", body)[0] == 3
    response = request.RESPONSE_TYPE.decode(body[4:])
    (_, partitions), = response.topics
    (_, error_code, _, _, _, record_errors, error_message), = partitions
    assert error_code == 87, response  # INVALID_RECORD
    assert [index for index, _ in record_errors] == [1, 3], record_errors
    assert "key" in (error_message or ""), error_message
