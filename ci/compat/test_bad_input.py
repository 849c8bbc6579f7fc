"""Hostile or broken clients on raw sockets: the broker must neither crash nor hang.

Every test sends its bad input to every shard's port (each shard has its own listener), then
checks that the process is still alive and that a normal confluent-kafka produce + consume
round trip still works. Where Kafka closes the connection (bad size, unknown API key,
unparsable header) the broker is expected to close it too, within a few seconds.
"""

from __future__ import annotations

import random
import socket
import struct

import pytest

import kafka_wire as wire
from confluent_helpers import produce_consume_smoke

CLOSE_TIMEOUT_S = 5.0


def still_serves(broker, unique_topic, context: str) -> None:
    broker.assert_alive(f"after {context}")
    produce_consume_smoke(broker.bootstrap, unique_topic("smoke"))
    broker.assert_alive(f"after {context} and a normal round trip")


def expect_close(sock: socket.socket, what: str, port: int) -> None:
    closed, received = wire.closed_by_peer(sock, CLOSE_TIMEOUT_S)
    assert closed, (f"port {port}: connection still open {CLOSE_TIMEOUT_S} s after {what} "
                    f"(received {received[:64]!r})")


def test_size_prefix_longer_than_data_then_close(broker, unique_topic):
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(struct.pack(">i", 1000) + b"\x00\x12\x00\x00\x00\x00\x00\x01\x00\x00")
    still_serves(broker, unique_topic, "a frame that promised 1000 bytes and sent 10")


def test_negative_size_prefix(broker, unique_topic):
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(struct.pack(">i", -1) + b"\x00" * 16)
            expect_close(sock, "a negative size prefix", port)
    still_serves(broker, unique_topic, "a negative size prefix")


@pytest.mark.parametrize("size", [100 * 1024 * 1024 + 1, 0x7FFFFFFF])
def test_size_prefix_over_100_mib(broker, unique_topic, size):
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(struct.pack(">i", size) + wire.request_header_v1(wire.API_VERSIONS, 0, 1))
            expect_close(sock, f"a size prefix of {size} bytes", port)
    still_serves(broker, unique_topic, f"a size prefix of {size} bytes")


def test_zero_size_frame(broker, unique_topic):
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(struct.pack(">i", 0))
            expect_close(sock, "a zero-length frame (no request header)", port)
    still_serves(broker, unique_topic, "a zero-length frame")


def test_garbage_after_valid_size(broker, unique_topic):
    for port in broker.ports:
        # 0xff.. parses as api_key -1, version -1: no such request.
        with wire.connect(port) as sock:
            sock.sendall(wire.frame(b"\xff" * 64))
            expect_close(sock, "64 bytes of 0xff in a well-sized frame", port)
        # A truncated header: api_key and half a version.
        with wire.connect(port) as sock:
            sock.sendall(wire.frame(b"\x00\x12\x00"))
            expect_close(sock, "a frame holding a truncated request header", port)
    still_serves(broker, unique_topic, "garbage frames")


def test_known_api_with_garbage_body(broker, unique_topic):
    """A Produce v7 and a Metadata v9 header followed by random bytes: answer or close, never hang."""
    garbage = random.Random(20240601).randbytes(256)  # fixed, so a failure reproduces
    for port in broker.ports:
        for api_key, version in ((0, 7), (3, 9), (1, 11)):
            correlation_id = 4242
            with wire.connect(port) as sock:
                sock.sendall(wire.frame(wire.request_header_v1(api_key, version, correlation_id) + garbage))
                closed, received = wire.closed_by_peer(sock, CLOSE_TIMEOUT_S)
                answered = len(received) >= 8 and \
                    struct.unpack_from(">i", received, 4)[0] == correlation_id
                assert closed or answered, (
                    f"port {port}: api {api_key} v{version} with a garbage body was neither "
                    f"answered nor closed within {CLOSE_TIMEOUT_S} s (received {received[:64]!r})")
    still_serves(broker, unique_topic, "known APIs with garbage bodies")


def test_unknown_api_key(broker, unique_topic):
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(wire.frame(wire.request_header_v1(32000, 0, 7)))
            expect_close(sock, "a request with api_key 32000", port)
    still_serves(broker, unique_topic, "an unknown API key")


def test_api_versions_unsupported_version(broker, unique_topic):
    """Kafka answers an ApiVersions version it does not know with UNSUPPORTED_VERSION in a v0
    body that lists its ranges, and keeps the connection, so the client can retry lower."""
    for port in broker.ports:
        with wire.connect(port) as sock:
            sock.sendall(wire.api_versions_request(99, correlation_id=123))
            correlation_id, error_code, ranges = wire.parse_api_versions_v0(wire.read_frame(sock))
            assert correlation_id == 123, f"port {port}: correlation id {correlation_id}"
            assert error_code == wire.UNSUPPORTED_VERSION, \
                f"port {port}: ApiVersions v99 answered with error {error_code}, expected 35"
            assert wire.API_VERSIONS in ranges, f"port {port}: ApiVersions not listed: {ranges}"
            low, high = ranges[wire.API_VERSIONS]
            assert low == 0 <= high, f"port {port}: ApiVersions range {low}..{high}, v0 must be in it"

            sock.sendall(wire.api_versions_request(0, correlation_id=124))
            correlation_id, error_code, ranges = wire.parse_api_versions_v0(wire.read_frame(sock))
            assert (correlation_id, error_code) == (124, 0), \
                f"port {port}: retry with v0 on the same connection got {(correlation_id, error_code)}"
            assert wire.API_VERSIONS in ranges and wire.METADATA in ranges, ranges
    still_serves(broker, unique_topic, "ApiVersions v99")


def test_client_disconnects_mid_request(broker, unique_topic):
    request = wire.metadata_request_v1_all_topics(correlation_id=9)
    for port in broker.ports:
        # Half a frame, then a clean close.
        with wire.connect(port) as sock:
            sock.sendall(request[: len(request) // 2])
        # A whole request, closed before the response is read.
        with wire.connect(port) as sock:
            sock.sendall(request * 20)
        # A whole request, then a reset (SO_LINGER 0) instead of a clean close.
        sock = wire.connect(port)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        sock.sendall(request + request[:7])
        sock.close()
    still_serves(broker, unique_topic, "clients that disconnect mid-request")
