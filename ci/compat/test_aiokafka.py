"""aiokafka (asyncio, its own protocol code): an idempotent producer, a two-member group that
splits the topic and commits what it read, a later member that finds nothing left, and the
admin client's view of the cluster.
"""

from __future__ import annotations

import asyncio
import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

PARTITIONS = 3
RECORDS = 3000


async def produce(bootstrap: str, topic: str) -> set[tuple[int, int]]:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=True,
                                acks="all", linger_ms=5)
    await producer.start()
    try:
        sent = [await producer.send(topic, key=b"k%d" % (i % 11), value=b"v%d" % i)
                for i in range(RECORDS)]
        acked = await asyncio.gather(*sent)
    finally:
        await producer.stop()
    return {(meta.partition, meta.offset) for meta in acked}


async def member(bootstrap: str, topic: str, group: str, name: str, shared: dict,
                 done: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                                client_id=name, auto_offset_reset="earliest",
                                enable_auto_commit=False)
    await consumer.start()
    records, partitions = [], set()
    shared[name] = (records, partitions)
    deadline = time.monotonic() + 60
    try:
        while time.monotonic() < deadline and not done.is_set():
            polled = await consumer.getmany(timeout_ms=500)
            for tp, batch in polled.items():
                partitions.add(tp.partition)
                records.extend((tp.partition, r.offset) for r in batch)
            if polled:
                await consumer.commit()
            if len(shared) == 2 and sum(len(r) for r, _ in shared.values()) >= RECORDS:
                done.set()
    finally:
        await consumer.stop()


async def scenario(bootstrap: str, topic: str, group: str) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, num_partitions=PARTITIONS,
                                            replication_factor=1)])
        cluster = await admin.describe_cluster()
        assert len(cluster["brokers"]) == 2, cluster
    finally:
        await admin.close()

    acked = await produce(bootstrap, topic)
    assert len(acked) == RECORDS, "every record acknowledged at its own offset"

    shared: dict = {}
    done = asyncio.Event()
    await asyncio.gather(*(member(bootstrap, topic, group, f"member-{i}", shared, done)
                           for i in range(2)))
    consumed = [pair for records, _ in shared.values() for pair in records]
    assert sorted(consumed) == sorted(acked), "each acknowledged record read once"
    partitions = [p for _, p in shared.values()]
    assert all(partitions) and not partitions[0] & partitions[1], partitions

    late = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, group_id=group,
                            auto_offset_reset="earliest", enable_auto_commit=False)
    await late.start()
    try:
        leftover = []
        for _ in range(6):
            polled = await late.getmany(timeout_ms=500)
            leftover.extend(r for batch in polled.values() for r in batch)
        assert len(late.assignment()) == PARTITIONS
        assert leftover == [], "a later member resumes from the committed offsets"
    finally:
        await late.stop()


def test_aiokafka_idempotent_producer_and_a_group_that_splits_and_commits(broker, unique_topic):
    asyncio.run(asyncio.wait_for(
        scenario(broker.bootstrap, unique_topic(), unique_topic("group")), timeout=180))
