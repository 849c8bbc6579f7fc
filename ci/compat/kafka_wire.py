"""Just enough of the Kafka wire format to send hand-made (and broken) frames.

A frame is `size:i32 | request header | body`. Request header v1 is
`api_key:i16 | api_version:i16 | correlation_id:i32 | client_id:nullable i16 string`.
"""

from __future__ import annotations

import socket
import struct
import time

API_VERSIONS = 18
METADATA = 3
UNSUPPORTED_VERSION = 35


def request_header_v1(api_key: int, api_version: int, correlation_id: int,
                      client_id: str = "spate-ci-raw") -> bytes:
    client = client_id.encode()
    return struct.pack(">hhih", api_key, api_version, correlation_id, len(client)) + client


def request_header_v2(api_key: int, api_version: int, correlation_id: int,
                      client_id: str = "spate-ci-raw") -> bytes:
    """Header v2 (flexible requests): header v1 followed by an empty tagged-field section."""
    return request_header_v1(api_key, api_version, correlation_id, client_id) + b"\x00"


def uvarint(value: int) -> bytes:
    """An unsigned varint, as flexible versions write lengths and tagged-field counts."""
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def compact_bytes(data: bytes) -> bytes:
    """A compact string or bytes field of any length."""
    return uvarint(len(data) + 1) + data


def compact_string(text: str) -> bytes:
    data = text.encode()
    assert len(data) + 1 < 0x80, "one-byte unsigned varint only"
    return bytes([len(data) + 1]) + data


def frame(payload: bytes) -> bytes:
    return struct.pack(">i", len(payload)) + payload


def api_versions_request(api_version: int, correlation_id: int) -> bytes:
    """An ApiVersions request as a client of that version sends it.

    v0-v2: header v1 and an empty body. v3 and later are flexible: header v2 (with tagged
    fields) and a body of client_software_name, client_software_version (compact strings) and
    tagged fields. This is also what a client newer than the broker sends (librdkafka starts
    with v3), so it is the right shape for an unsupported version too.
    """
    if api_version <= 2:
        return frame(request_header_v1(API_VERSIONS, api_version, correlation_id))
    body = compact_string("spate-ci-raw") + compact_string("0.0.0") + b"\x00"
    return frame(request_header_v2(API_VERSIONS, api_version, correlation_id) + body)


def metadata_request_v1_all_topics(correlation_id: int) -> bytes:
    """Metadata v1 with a null topic list (all topics)."""
    return frame(request_header_v1(METADATA, 1, correlation_id) + struct.pack(">i", -1))


def connect(port: int, timeout_s: float = 5.0) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def read_exact(sock: socket.socket, size: int) -> bytes:
    chunks = []
    remaining = size
    while remaining:
        chunk = sock.recv(remaining)
        if not chunk:
            raise ConnectionError(f"connection closed with {remaining} of {size} bytes unread")
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def read_frame(sock: socket.socket) -> bytes:
    (size,) = struct.unpack(">i", read_exact(sock, 4))
    assert 0 <= size < 64 * 1024 * 1024, f"implausible response size {size}"
    return read_exact(sock, size)


def closed_by_peer(sock: socket.socket, timeout_s: float = 5.0) -> tuple[bool, bytes]:
    """Wait until the peer closes. Returns (closed, bytes received before the close)."""
    deadline = time.monotonic() + timeout_s
    received = b""
    while time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            chunk = sock.recv(65536)
        except socket.timeout:
            break
        except (ConnectionResetError, BrokenPipeError):
            return True, received
        if not chunk:
            return True, received
        received += chunk
    return False, received


def parse_api_versions_v0(body: bytes) -> tuple[int, int, dict[int, tuple[int, int]]]:
    """(correlation_id, error_code, {api_key: (min, max)}) from a v0 ApiVersions response."""
    correlation_id, error_code, count = struct.unpack_from(">ihi", body, 0)
    assert 0 <= count < 1000, f"implausible ApiVersions array length {count}"
    offset = 10
    ranges = {}
    for _ in range(count):
        api_key, min_version, max_version = struct.unpack_from(">hhh", body, offset)
        ranges[api_key] = (min_version, max_version)
        offset += 6
    return correlation_id, error_code, ranges
