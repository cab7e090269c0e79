"""The link's own client frames: what websockets' server side reads from them, and how keys are drawn."""

from __future__ import annotations

import os

import pytest
from websockets.frames import Opcode
from websockets.protocol import Protocol, Side

from nonstop.links import frames
from nonstop.links.frames import MaskKeys, ping_frame, pong_frame, text_frame


def server_reads(wire: bytes) -> list[tuple[Opcode, bytes, bool]]:
    """Feed `wire` to an open server-side protocol; return the frames it parsed (opcode, data, fin)."""
    server = Protocol(Side.SERVER)  # an open connection's protocol, past the handshake: frames only
    server.receive_data(wire)
    assert server.parser_exc is None, server.parser_exc
    return [(f.opcode, f.data, f.fin) for f in server.events_received()]


@pytest.mark.parametrize("length", [0, 1, 125, 126, 65535, 65536, 70000])
def test_a_server_reads_each_length_back_exactly(length: int) -> None:
    text = ("é" * length)[: length // 2] + "x" * (length - length // 2)  # multi-byte characters included
    keys = MaskKeys()
    wire = text_frame(text, keys.next()) + text_frame("after", keys.next())
    assert server_reads(wire) == [(Opcode.TEXT, text.encode(), True), (Opcode.TEXT, b"after", True)]


def test_frames_are_masked_with_a_fresh_key_each() -> None:
    keys = MaskKeys()
    drawn = [keys.next() for _ in range(3000)]
    assert all(len(k) == 4 for k in drawn)
    assert len(set(drawn)) > 2990  # 32-bit keys: a handful of repeats at most by chance
    frame = text_frame("hello", drawn[0])
    assert frame[1] & 0x80, "the MASK bit a client must set"
    assert frame[2:6] == drawn[0]
    assert frame[6:] != b"hello", "the payload is masked on the wire"


def test_keys_come_from_the_os_one_read_per_thousand_frames(monkeypatch: pytest.MonkeyPatch) -> None:
    reads: list[int] = []
    urandom = os.urandom

    def counting_urandom(n: int) -> bytes:
        reads.append(n)
        return urandom(n)

    monkeypatch.setattr(frames.os, "urandom", counting_urandom)
    keys = MaskKeys()
    for _ in range(2048):
        keys.next()
    assert reads == [4096, 4096]


def test_a_server_answers_the_links_ping_with_the_pong_the_link_looks_for() -> None:
    """`Link` recognises the pong to its ping by its bytes on the wire (`pong_frame`): they must be what
    a server writes back for that ping."""
    keys = MaskKeys()
    payload = keys.next()
    server = Protocol(Side.SERVER)
    server.receive_data(ping_frame(payload, keys.next()))
    assert server.parser_exc is None, server.parser_exc
    assert [(f.opcode, f.data, f.fin) for f in server.events_received()] == [(Opcode.PING, payload, True)]
    assert b"".join(server.data_to_send()) == pong_frame(payload)
