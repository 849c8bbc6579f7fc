"""kafka-python 3 against a Spate broker, run in its own virtualenv (ci/.venv-kafka-python3:
kafka-python 3 and the 2.x of ci/requirements.txt are the same `kafka` package) by
test_kafka_python3.py, which starts the broker and reads the JSON this prints.

    python kafka_python3_client.py BOOTSTRAP TOPIC GROUP RECORDS

What it does, as a user of kafka-python 3 would with its defaults (3.x turns idempotence on
and acks=all): creates TOPIC with 3 partitions, produces RECORDS keyed records, consumes them
with two consumers of GROUP that split the partitions (committing as they go), then a third
member that must find nothing left, and asks every broker for its log dirs.
"""

from __future__ import annotations

import json
import sys
import threading
import time

from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer
from kafka.admin import NewTopic


def main() -> None:
    bootstrap, topic, group, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    admin = KafkaAdminClient(bootstrap_servers=bootstrap, client_id="kp3-admin")
    admin.create_topics([NewTopic(topic, num_partitions=3, replication_factor=1)])

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=5)
    config = producer.config
    futures = [producer.send(topic, key=b"k%d" % (i % 7), value=b"v%d" % i) for i in range(count)]
    producer.flush(30)
    acked = [future.get(timeout=30) for future in futures]
    producer.close()

    seen: dict[str, list] = {}
    lock = threading.Lock()
    done = threading.Event()

    def member(name: str) -> None:
        consumer = KafkaConsumer(
            topic,
            bootstrap_servers=bootstrap,
            group_id=group,
            client_id=name,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
        )
        records = []
        partitions: set[int] = set()
        deadline = time.time() + 60
        while time.time() < deadline and not done.is_set():
            polled = consumer.poll(timeout_ms=500)
            for tp, batch in polled.items():
                partitions.add(tp.partition)
                records.extend((tp.partition, r.offset, r.value.decode()) for r in batch)
            if polled:
                consumer.commit()
            with lock:
                seen[name] = {"records": records, "partitions": sorted(partitions)}
                if sum(len(v["records"]) for v in seen.values()) >= count and len(seen) == 2:
                    done.set()
        consumer.close()

    threads = [threading.Thread(target=member, args=(f"member-{i}",)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    # A later member of the group starts from the committed offsets: nothing is left.
    late = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, group_id=group, auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    leftover = []
    deadline = time.time() + 10
    while time.time() < deadline and not late.assignment():
        leftover.extend(r for batch in late.poll(timeout_ms=500).values() for r in batch)
    for _ in range(4):
        leftover.extend(r for batch in late.poll(timeout_ms=250).values() for r in batch)
    late.close()

    log_dirs = admin.describe_log_dirs()
    admin.close()
    print(json.dumps({
        "idempotent": bool(config.get("enable_idempotence")),
        "acks": config.get("acks"),
        "acked": [[m.partition, m.offset] for m in acked],
        "members": seen,
        "leftover": len(leftover),
        "log_dirs": log_dirs,
    }, default=str))


if __name__ == "__main__":
    main()
