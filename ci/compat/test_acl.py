"""ACLs (issue 18): with `--authorizer acl`, real clients are held to the ACLs that
confluent-kafka's AdminClient and `spate acl` manage, with Kafka's semantics and error codes.

Each broker has a PLAINTEXT listener, where the harness and the CLI act as User:ANONYMOUS (a
super user here, as Kafka's inter-broker principal usually is), and a SASL_PLAINTEXT listener
where alice and bob authenticate and get only what their ACLs allow.
"""

from __future__ import annotations

import time

import pytest
from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import (AclBinding, AclBindingFilter, AclOperation,
                                   AclPermissionType, AdminClient, NewTopic, ResourcePatternType,
                                   ResourceType)

from conftest import make_broker
from confluent_helpers import create_topic
from test_sasl import PASSWORD, SaslBroker, spate


class AclBroker(SaslBroker):
    """A SASL broker with the ACL authorizer on, User:ANONYMOUS (the PLAINTEXT port) super."""

    def command(self) -> list[str]:
        return super().command() + ["--authorizer", "acl", "--super-users", "User:ANONYMOUS"]


@pytest.fixture
def acl_broker(request, spate_bin, ci_tmp):
    yield from make_broker(request, spate_bin, ci_tmp, broker_class=AclBroker)


def add_users(broker: SaslBroker) -> None:
    for user in ("alice", "bob"):
        spate("user", "add", user, "--password", PASSWORD, "--mechanism", "SCRAM-SHA-512",
              "--brokers", broker.bootstrap)


def as_user(user: str) -> dict:
    return {"security.protocol": "SASL_PLAINTEXT", "sasl.mechanisms": "SCRAM-SHA-512",
            "sasl.username": user, "sasl.password": PASSWORD}


def admin(bootstrap: str, config: dict | None = None) -> AdminClient:
    return AdminClient({"bootstrap.servers": bootstrap, "socket.timeout.ms": 10000,
                        **(config or {})})


def allow(principal: str, operation, name: str, resource=ResourceType.TOPIC,
          pattern=ResourcePatternType.LITERAL) -> AclBinding:
    return AclBinding(resource, name, pattern, principal, "*", operation,
                      AclPermissionType.ALLOW)


def create_acls(bootstrap: str, bindings: list[AclBinding]) -> None:
    client = admin(bootstrap)  # kept alive until the futures resolve
    for future in client.create_acls(bindings, request_timeout=15).values():
        future.result(timeout=20)


def error_codes(errors: list) -> set[int]:
    return {error.code() if isinstance(error, KafkaError) else error for error in errors}


def produce_errors(bootstrap: str, topic: str, user: str, count: int = 5,
                   extra: dict | None = None) -> list:
    """The delivery errors of `count` records that `user` produces to `topic`."""
    errors: list = []
    producer = Producer({"bootstrap.servers": bootstrap, "message.timeout.ms": 15000,
                         "error_cb": errors.append, **as_user(user), **(extra or {})})
    for index in range(count):
        producer.produce(topic, f"{user}-{index}".encode(),
                         on_delivery=lambda error, _message: error and errors.append(error))
    assert producer.flush(30) == 0, "records still undelivered after 30 s"
    return errors


def group_consume(bootstrap: str, topic: str, group: str, user: str, expected: int,
                  timeout_s: float = 30.0) -> tuple[list[bytes], list[KafkaError]]:
    """What `user` reads of `topic` as a member of `group`, and the consumer's errors; ends
    at `expected` records, at the first error, or at the deadline."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group,
                         "auto.offset.reset": "earliest", "enable.auto.commit": False,
                         "session.timeout.ms": 10000, **as_user(user)})
    values: list[bytes] = []
    errors: list[KafkaError] = []
    try:
        consumer.subscribe([topic])
        deadline = time.monotonic() + timeout_s
        while len(values) < expected and not errors and time.monotonic() < deadline:
            for message in consumer.consume(num_messages=500, timeout=0.5):
                if message.error() is not None:
                    errors.append(message.error())
                else:
                    values.append(message.value())
        if values and not errors:
            consumer.commit(asynchronous=False)
    except KafkaException as error:
        errors.append(error.args[0])
    finally:
        consumer.close()
    return values, errors


def test_admin_client_creates_describes_and_deletes_acls(acl_broker):
    bootstrap = acl_broker.bootstrap
    bindings = [
        allow("User:alice", AclOperation.WRITE, "orders"),
        allow("User:alice", AclOperation.READ, "orders."),
        allow("User:bob", AclOperation.READ, "payments", pattern=ResourcePatternType.PREFIXED),
        allow("User:bob", AclOperation.DESCRIBE, "billing", resource=ResourceType.GROUP),
    ]
    create_acls(bootstrap, bindings)
    everything = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, None, None,
                                  AclOperation.ANY, AclPermissionType.ANY)
    client = admin(bootstrap)  # kept alive until the futures resolve
    described = client.describe_acls(everything, request_timeout=15).result(20)
    assert sorted(map(str, described)) == sorted(map(str, bindings))
    # MATCH finds every ACL that applies to a name: bob's prefixed one for payments.eu.
    matching = AclBindingFilter(ResourceType.TOPIC, "payments.eu", ResourcePatternType.MATCH,
                                None, None, AclOperation.ANY, AclPermissionType.ANY)
    found = client.describe_acls(matching, request_timeout=15).result(20)
    assert [binding.principal for binding in found] == ["User:bob"]
    alices = AclBindingFilter(ResourceType.ANY, None, ResourcePatternType.ANY, "User:alice",
                              None, AclOperation.ANY, AclPermissionType.ANY)
    deleted = client.delete_acls([alices], request_timeout=15)[alices].result(20)
    assert len(deleted) == 2
    left = client.describe_acls(everything, request_timeout=15).result(20)
    assert {binding.principal for binding in left} == {"User:bob"}


def test_producers_and_consumers_are_held_to_their_acls(acl_broker, unique_topic):
    add_users(acl_broker)
    topic, other = unique_topic("orders"), unique_topic("secret")
    group = f"{topic}-readers"
    create_topic(acl_broker.bootstrap, topic, 2)
    create_topic(acl_broker.bootstrap, other, 1)
    create_acls(acl_broker.bootstrap, [
        allow("User:alice", AclOperation.WRITE, topic),
        allow("User:alice", AclOperation.READ, topic),
        allow("User:alice", AclOperation.READ, group, resource=ResourceType.GROUP),
    ])
    sasl = acl_broker.sasl_bootstrap
    assert produce_errors(sasl, topic, "alice", count=200) == []
    values, errors = group_consume(sasl, topic, group, "alice", expected=200)
    assert not errors and len(values) == 200, (len(values), errors)
    # Alice sees only the topic she may describe; bob sees none.
    assert set(admin(sasl, as_user("alice")).list_topics(timeout=15).topics) == {topic}
    assert admin(sasl, as_user("bob")).list_topics(timeout=15).topics == {}
    # Bob may not write the topic, nor alice the other one: each record fails with Kafka's
    # error, and nothing is appended.
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in error_codes(
        produce_errors(sasl, topic, "bob"))
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in error_codes(
        produce_errors(sasl, other, "alice"))
    # Bob may not join alice's group.
    _, errors = group_consume(sasl, topic, group, "bob", expected=1, timeout_s=20)
    assert KafkaError.GROUP_AUTHORIZATION_FAILED in error_codes(errors), errors
    # Alice may not create or delete topics.
    alice = admin(sasl, as_user("alice"))
    futures = alice.create_topics(
        [NewTopic(unique_topic("new"), 1, 1)], request_timeout=15)
    for future in futures.values():
        with pytest.raises(KafkaException) as refused:
            future.result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    for future in alice.delete_topics([topic], request_timeout=15).values():
        with pytest.raises(KafkaException) as refused:
            future.result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.TOPIC_AUTHORIZATION_FAILED
    # Nor change ACLs (ALTER on the cluster).
    futures = alice.create_acls(
        [allow("User:alice", AclOperation.ALL, "*")], request_timeout=15)
    for future in futures.values():
        with pytest.raises(KafkaException) as refused:
            future.result(timeout=20)
        assert refused.value.args[0].code() == KafkaError.CLUSTER_AUTHORIZATION_FAILED
    # The other topic holds nothing; the topic holds exactly alice's 200 records.
    low_high = Consumer({"bootstrap.servers": acl_broker.bootstrap, "group.id": "x"})
    try:
        assert low_high.get_watermark_offsets(TopicPartition(other, 0), timeout=10) == (0, 0)
        total = sum(low_high.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                    for p in range(2))
        assert total == 200
    finally:
        low_high.close()


def test_prefixes_deny_and_idempotence_follow_kafka(acl_broker, unique_topic):
    add_users(acl_broker)
    prefix = unique_topic("team")
    allowed, denied = f"{prefix}.events", f"{prefix}.payroll"
    for topic in (allowed, denied):
        create_topic(acl_broker.bootstrap, topic, 1)
    create_acls(acl_broker.bootstrap, [
        allow("User:alice", AclOperation.ALL, f"{prefix}.", pattern=ResourcePatternType.PREFIXED),
        AclBinding(ResourceType.TOPIC, denied, ResourcePatternType.LITERAL, "User:alice", "*",
                   AclOperation.WRITE, AclPermissionType.DENY),
    ])
    sasl = acl_broker.sasl_bootstrap
    # An idempotent producer needs IDEMPOTENT_WRITE on the cluster or WRITE on some topic
    # (KIP-679): alice has the latter.
    idempotent = {"enable.idempotence": True}
    assert produce_errors(sasl, allowed, "alice", extra=idempotent) == []
    assert KafkaError.TOPIC_AUTHORIZATION_FAILED in error_codes(
        produce_errors(sasl, denied, "alice"))
    # Bob has neither: InitProducerId is refused, a fatal error for an idempotent producer.
    codes = error_codes(produce_errors(sasl, allowed, "bob", count=1, extra=idempotent))
    assert codes & {KafkaError.CLUSTER_AUTHORIZATION_FAILED,
                    KafkaError.TOPIC_AUTHORIZATION_FAILED}, codes


def test_acls_survive_a_restart_and_kafka_python_meets_them(acl_broker, unique_topic):
    kafka = pytest.importorskip("kafka")
    add_users(acl_broker)
    topic = unique_topic("kp")
    create_topic(acl_broker.bootstrap, topic, 1)
    spate("acl", "add", "--allow", "User:alice", "--operation", "Write", "--operation",
          "Describe", "--topic", topic, "--brokers", acl_broker.bootstrap)
    acl_broker.restart()

    def producer(user: str):
        return kafka.KafkaProducer(
            bootstrap_servers=acl_broker.sasl_bootstrap, security_protocol="SASL_PLAINTEXT",
            sasl_mechanism="SCRAM-SHA-512", sasl_plain_username=user,
            sasl_plain_password=PASSWORD, acks="all", request_timeout_ms=15000,
            max_block_ms=15000, retries=0)

    alice = producer("alice")
    alice.send(topic, b"allowed").get(timeout=30)
    alice.close()
    bob = producer("bob")
    with pytest.raises(kafka.errors.TopicAuthorizationFailedError):
        bob.send(topic, b"refused").get(timeout=30)
    bob.close()
