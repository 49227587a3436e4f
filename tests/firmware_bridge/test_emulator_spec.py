"""The emulated firmware and the host link follow docs/protocol.md revision 2 over a real pty:
sequence numbers (the ``sequences`` vectors), a foreign-version HELLO, frames in the wrong
direction and out-of-range values (the invalid ``frames`` vectors), the tie rule on the host's
send path (the ``fixed_point`` vectors) and the u16 torque limit."""

from __future__ import annotations

import itertools
import json
import os
import struct
import threading
import time
import tty
from collections.abc import Iterator

import numpy as np
import pytest
import serial

from firmware_bridge import protocol as P
from firmware_bridge.emulator import EmulatedJoint, FirmwareEmulator
from firmware_bridge.link import HostLink, LinkError
from firmware_bridge.vectors.generate import VECTORS_PATH

from .conftest import JOINTS, RawHost, wait_until

VECTORS = json.loads(VECTORS_PATH.read_text())
FRAMES = {f["name"]: f for f in VECTORS["frames"]}


@pytest.fixture
def patient_emulator() -> Iterator[FirmwareEmulator]:
    """An emulator with a 2 s command timeout: these tests are about what the device does with
    each frame, and on a loaded machine a round trip can exceed the default 100 ms."""
    emu = FirmwareEmulator(JOINTS, command_timeout_s=2.0, telemetry_period_s=0.002)
    emu.start()
    yield emu
    emu.stop()


def _torque_frame(seq: int) -> bytes:
    """A 4-joint TORQUE_CMD built by hand (the encoder refuses seq 0), torque = seq % 3000."""
    payload = struct.pack("<IIB4h", seq, 0, 4, seq % 3000, 0, 0, 0)
    body = P.HEADER.pack(1, P.T_TORQUE_CMD, len(payload)) + payload
    return P.cobs_encode(body + P.CRC.pack(P.crc16(body))) + b"\x00"


class Session:
    """Drives the events of a ``sequences`` vector over the pty."""

    def __init__(self, host: RawHost) -> None:
        self.h = host
        self.ids = itertools.count(1)

    def hello(self, version: int = P.PROTOCOL_VERSION) -> None:
        nonce = next(self.ids)
        self.h.write(P.encode(P.Hello(nonce), version=version))
        self.h.expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == nonce, "device info")

    def request(self, cls: type) -> P.Ack:
        rid = next(self.ids)
        self.h.send(cls(rid))
        return self.h.ack(rid)

    def event(self, e: str | int) -> None:
        if e == "hello":
            self.hello()
        elif e == "hello_v2":
            self.hello(version=2)
        elif e == "enable":
            assert self.request(P.Enable).result == P.ACK_OK
        elif e == "disable":
            assert self.request(P.Disable).result == P.ACK_OK
        else:
            self.h.write(_torque_frame(e))


@pytest.mark.parametrize("vec", VECTORS["sequences"], ids=lambda v: v["name"])
def test_emulator_follows_sequence_vector(patient_emulator: FirmwareEmulator, vec: dict) -> None:
    emu = patient_emulator
    h = RawHost(emu.port)
    try:
        s = Session(h)
        for e in vec["events"]:
            s.event(e)
        # frames are handled in order: once this is acknowledged, every command was handled
        s.request(P.ClearFaults)
        st = emu.stats()
        assert [seq for seq, _ in emu.applied_log] == vec["applied"]
        assert [c[0] for _, c in emu.applied_log] == [q % 3000 for q in vec["applied"]]
        assert st["commands_out_of_order"] == vec["not_newer"]
        assert st["commands_refused"] == vec["refused"]
        assert st["frame_errors"]["value"] == vec["dropped_seq_0"]
        assert st["seq_gaps"] == vec["seq_gaps"]
        tel = h.expect(lambda m: isinstance(m, P.Telemetry), "telemetry")
        assert tel.last_seq_applied == vec["last_seq_applied"]
    finally:
        h.ser.close()


def test_seq_zero_after_hello_is_not_applied_and_keeps_no_torque(
    patient_emulator: FirmwareEmulator,
) -> None:
    """The issue's reproduction: repeated seq-0 commands used to be applied."""
    h = RawHost(patient_emulator.port)
    try:
        s = Session(h)
        s.event("hello")
        s.event("enable")
        for _ in range(3):
            h.write(_torque_frame(0))
        s.request(P.ClearFaults)
        st = patient_emulator.stats()
        assert st["commands_applied"] == 0 and st["applied_torque_nm"] == [0.0] * 4
        assert st["frame_errors"]["value"] == 3 and st["commands_received"] == 0
    finally:
        h.ser.close()


def test_looped_back_frames_do_not_keep_the_device_alive(emulator: FirmwareEmulator) -> None:
    """TX wired to RX: the device hears only its own frames. It must drop them (direction)
    and time out on host silence: unpaired, torque zero, HOST_TIMEOUT latched. Revision 1's
    emulator took them as host activity: the session never timed out (only the stale-command
    watchdog zeroed the torque, and the device stayed enabled)."""
    ser = serial.Serial(emulator.port, 1_000_000, timeout=0.01)
    dec = P.StreamDecoder()
    try:
        ser.write(
            P.encode(P.Hello(1))
            + P.encode(P.Enable(2))
            + P.encode(P.TorqueCommand(1, 0, (500, 0, 0, 0)))
        )
        wait_until(lambda: emulator.stats()["applied_torque_nm"][0] == 5.0, what="torque on")
        t_end = time.monotonic() + 10.0
        while emulator.stats()["timeouts"] == 0 and time.monotonic() < t_end:
            data = ser.read(ser.in_waiting or 1)
            dec.feed(data)
            ser.write(data)  # the loop-back
        st = emulator.stats()
        assert st["timeouts"] == 1, "the device kept a session alive on its own echo"
        assert st["applied_torque_nm"] == [0.0] * 4 and not st["enabled"]
        assert not st["handshaken"] and st["fault_bits"] & P.FAULT_HOST_TIMEOUT
        assert st["frame_errors"]["direction"] > 0
    finally:
        ser.close()


_DEVICE_VERSION_VECTORS = [
    f for f in VECTORS["frames"] if f["receiver"] == P.DEVICE and f["expect"] == "version"
]


def _device_info_nonces_until(h: RawHost, nonce: int) -> list[int]:
    """Every DEVICE_INFO nonce received, in order, up to the one answering ``nonce``."""
    seen: list[int] = []
    deadline = time.monotonic() + 5.0
    while time.monotonic() < deadline:
        msgs, h.got = h.got, []
        for m in msgs:
            if isinstance(m, P.DeviceInfo):
                seen.append(m.nonce)
                if m.nonce == nonce:
                    return seen
        h.got.extend(h.dec.feed(h.ser.read(h.ser.in_waiting or 1)))
    raise AssertionError(f"no DEVICE_INFO for nonce {nonce}; saw {seen}")


@pytest.mark.parametrize("vec", _DEVICE_VERSION_VECTORS, ids=lambda v: v["name"])
def test_emulator_answers_exactly_the_foreign_hellos_of_the_vectors(
    patient_emulator: FirmwareEmulator, vec: dict
) -> None:
    h = RawHost(patient_emulator.port)
    try:
        s = Session(h)
        for e in ("hello", "enable", 100):
            s.event(e)
        h.echo(100)
        # frames are handled in order: an answer to the vector comes before the barrier's
        h.write(bytes.fromhex(vec["hex"]) + P.encode(P.Hello(0xBA881E5)))
        nonces = _device_info_nonces_until(h, 0xBA881E5)
        st = patient_emulator.stats()
        assert st["frame_errors"]["version"] == 1
        if vec["answer_nonce"] is None:
            assert nonces == [0xBA881E5]
        else:
            assert nonces == [vec["answer_nonce"], 0xBA881E5]

    finally:
        h.ser.close()


def test_foreign_hello_unpairs_and_resets_the_sequence(patient_emulator: FirmwareEmulator) -> None:
    emu = patient_emulator
    h = RawHost(emu.port)
    try:
        s = Session(h)
        for e in ("hello", "enable", 1000):
            s.event(e)
        assert h.echo(1000).torque[0] == 1000
        h.write(bytes.fromhex(FRAMES["hello_version_2"]["hex"]))
        info = h.expect(lambda m: isinstance(m, P.DeviceInfo), "answer to the foreign hello")
        assert info.nonce == FRAMES["hello_version_2"]["answer_nonce"]
        tel = h.expect(lambda m: isinstance(m, P.Telemetry), "telemetry")
        assert not tel.flags & (P.FLAG_HANDSHAKEN | P.FLAG_ENABLED)
        assert tel.torque == (0, 0, 0, 0) and tel.last_seq_applied == 0
        st = emu.stats()
        assert st["frame_errors"]["version"] == 1 and not st["handshaken"]
        # an ENABLE now is refused: a foreign HELLO does not pair
        assert s.request(P.Enable).result == P.ACK_NOT_HANDSHAKEN
    finally:
        h.ser.close()


_DEVICE_DROPS = [
    f
    for f in VECTORS["frames"]
    if f["receiver"] == P.DEVICE and f["expect"] not in ("ok", "version")
]


@pytest.mark.parametrize("vec", _DEVICE_DROPS, ids=lambda v: v["name"])
def test_emulator_drops_and_counts_each_invalid_vector_without_a_state_change(
    patient_emulator: FirmwareEmulator, vec: dict
) -> None:
    emu = patient_emulator
    h = RawHost(emu.port)
    try:
        s = Session(h)
        for e in ("hello", "enable", 100):
            s.event(e)
        h.echo(100)
        before = emu.stats()
        h.write(b"\x00" + bytes.fromhex(vec["hex"]))
        s.request(P.ClearFaults)  # barrier
        after = emu.stats()
        errors = {
            k: after["frame_errors"][k] - before["frame_errors"][k] for k in P.FrameError.KINDS
        }
        assert errors == {k: int(k == vec["expect"]) for k in P.FrameError.KINDS}
        assert after["commands_received"] == before["commands_received"]
        assert after["applied_torque_nm"] == before["applied_torque_nm"] == [1.0, 0.0, 0.0, 0.0]
        assert after["enabled"] and after["handshaken"]
        assert [m for m in h.got if isinstance(m, P.DeviceInfo)] == []
    finally:
        h.ser.close()


def test_host_send_path_rounds_ties_to_even(emulator: FirmwareEmulator) -> None:
    """HostLink.send_torque puts exactly the vectors' counts on the wire (joint 0, whose
    40 N m limit is above every value used)."""
    cases = [
        c
        for c in VECTORS["fixed_point"]
        if c["quantity"] == "torque" and c["count"] is not None and abs(float(c["si"])) < 40
    ]
    assert len(cases) >= 8
    link = HostLink(emulator.port, 1_000_000, n_joints=4)
    link.open()
    try:
        link.handshake(timeout_s=5.0)
        wait_until(lambda: link.healthy, what="healthy link")
        assert link.enable(timeout_s=5.0), link.last_error
        for c in cases:
            seq = link.send_torque(np.array([float(c["si"]), 0.0, 0.0, 0.0]))
            wait_until(
                lambda seq=seq: any(s == seq for s, _ in emulator.applied_log), what=f"seq {seq}"
            )
            got = next(t for s, t in emulator.applied_log if s == seq)
            assert got[0] == c["count"], c
    finally:
        link.close()


def test_torque_limit_is_u16_up_to_655_35_nm() -> None:
    joints = [EmulatedJoint("hip_l", 655.35, -0.5, 1.8)]
    emu = FirmwareEmulator(joints)
    assert emu._limit_counts[0] == 65535
    with pytest.raises(ValueError, match="655.35"):
        EmulatedJoint("hip_l", 655.36, -0.5, 1.8)
    with pytest.raises(ValueError, match="> 0"):
        EmulatedJoint("hip_l", 0.004, -0.5, 1.8)
    with pytest.raises(ValueError, match="joint name"):
        EmulatedJoint("hip l", 40.0, -0.5, 1.8)
    with pytest.raises(ValueError, match="joint name"):
        EmulatedJoint("", 40.0, -0.5, 1.8)


class FakeDevice:
    """A hand-built device on a pty that answers every HELLO with the given frame builder."""

    def __init__(self, reply) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.master)
        tty.setraw(self.slave)
        self.path = os.ttyname(self.slave)
        self.reply = reply
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        dec = P.StreamDecoder(receiver=P.DEVICE)
        while not self._stop.is_set():
            try:
                data = os.read(self.master, 1024)
            except OSError:
                return
            for m in dec.feed(data):
                if isinstance(m, P.Hello):
                    os.write(self.master, self.reply(m.nonce, data))

    def close(self) -> None:
        self._stop.set()
        os.close(self.master)
        os.close(self.slave)


def _device_info_with_joint_name(name: bytes):
    def reply(nonce: int, _data: bytes) -> bytes:
        p = struct.pack("<IHH16sB", nonce, 100, 2000, b"fake", 1)
        p += struct.pack("<8sHhh", name, 4000, -5000, 18000)
        body = P.HEADER.pack(1, P.T_DEVICE_INFO, len(p)) + p
        return P.cobs_encode(body + P.CRC.pack(P.crc16(body))) + b"\x00"

    return reply


def test_host_refuses_a_device_info_with_a_bad_name() -> None:
    dev = FakeDevice(_device_info_with_joint_name(b"hip\tl"))
    link = HostLink(dev.path, 1_000_000, n_joints=1)
    link.open()
    try:
        with pytest.raises(LinkError, match="'value': [1-9]"):
            link.handshake(timeout_s=0.5)
        assert link.stats()["value_errors"] >= 1 and not link.healthy
    finally:
        link.close()
        dev.close()


def test_host_drops_its_own_frames_on_a_looped_back_line() -> None:
    dev = FakeDevice(lambda _nonce, data: data)  # echoes what the host sent
    link = HostLink(dev.path, 1_000_000, n_joints=1)
    link.open()
    try:
        with pytest.raises(LinkError, match="'direction': [1-9]"):
            link.handshake(timeout_s=0.5)
        assert link.stats()["direction_errors"] >= 1
    finally:
        link.close()
        dev.close()
