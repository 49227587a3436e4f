"""The reference firmware (firmware/, C) on QEMU's lm3s6965evb, driven through the pty a host
opens: the conformance vectors (sequences, invalid frames, streams), its receiver fuzzed with
the noisy streams the C and Python codecs are compared on, and the device's faults (limits,
e-stop, host timeout, watchdog). One board boots per module; each test starts from a firmware
reset (QEMU's system reset), so its counters start at zero.

The tools (gcc-arm-none-eabi, qemu-system-arm) come from the distribution: where they are
missing these tests skip with the reason, except in CI (CI=true), where they fail.
"""

from __future__ import annotations

import json
import os
import random
import time
from collections.abc import Iterator

import pytest

from firmware_bridge import protocol as P
from firmware_bridge.qemu_firmware import QemuFirmware, firmware_version, missing_tools
from firmware_bridge.vectors.generate import VECTORS_PATH

from .conftest import JOINTS, RawHost, wait_until
from .test_emulator_spec import Session

VECTORS = json.loads(VECTORS_PATH.read_text())
FRAMES = {f["name"]: f for f in VECTORS["frames"]}
MISSING = missing_tools()
if MISSING and os.environ.get("CI") == "true":
    raise RuntimeError(
        "CI must run the QEMU firmware tests, but these tools are missing: " + ", ".join(MISSING)
    )
pytestmark = pytest.mark.skipif(
    bool(MISSING), reason="QEMU firmware tools missing: " + ", ".join(MISSING)
)


@pytest.fixture(scope="module")
def board() -> Iterator[QemuFirmware]:
    """A 2 s command timeout, as the emulator's spec tests: these tests are about what the
    device does with each frame, and on a loaded machine a round trip can exceed 100 ms."""
    fw = QemuFirmware(
        JOINTS,
        command_timeout_s=2.0,
        telemetry_period_s=0.002,
        device_id=f"exofw-{firmware_version()}",  # as the HIL bench builds it
    )
    fw.start()
    yield fw
    fw.stop()


@pytest.fixture
def fresh(board: QemuFirmware) -> Iterator[tuple[QemuFirmware, RawHost]]:
    board.reset()
    h = RawHost(board.port or "")
    yield board, h
    h.ser.close()


def _barrier(h: RawHost, nonce: int) -> None:
    """A HELLO and its DEVICE_INFO: the board handles frames in order, so every frame sent
    before it has been handled once this returns."""
    h.send(P.Hello(nonce))
    h.expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == nonce, f"device info {nonce}")


def _errors(s: dict) -> dict[str, int]:
    return {k: s[k] for k in P.FrameError.KINDS}


@pytest.mark.parametrize("vec", VECTORS["sequences"], ids=lambda v: v["name"])
def test_firmware_follows_sequence_vector(fresh, vec: dict) -> None:
    board, h = fresh
    s = Session(h)
    for e in vec["events"]:
        s.event(e)
    s.request(P.ClearFaults)  # handled in order: every command before it was handled
    st = board.raw_stats()
    assert [seq for seq, _ in st["applied"]] == vec["applied"]
    assert [c[0] for _, c in st["applied"]] == [q % 3000 for q in vec["applied"]]
    assert st["commands_out_of_order"] == vec["not_newer"]
    assert st["commands_refused"] == vec["refused"]
    assert st["value"] == vec["dropped_seq_0"]
    assert st["seq_gaps"] == vec["seq_gaps"]
    tel = h.expect(lambda m: isinstance(m, P.Telemetry), "telemetry")
    assert tel.last_seq_applied == vec["last_seq_applied"]


def _device_info_nonces(h: RawHost, until: int) -> list[int]:
    seen: list[int] = []
    deadline = time.monotonic() + 20.0  # generous: QEMU may be starved on a loaded machine
    while time.monotonic() < deadline:
        msgs, h.got = h.got, []
        for m in msgs:
            if isinstance(m, P.DeviceInfo):
                seen.append(m.nonce)
                if m.nonce == until:
                    return seen
        h.got.extend(h.dec.feed(h.ser.read(h.ser.in_waiting or 1)))
    raise AssertionError(f"no DEVICE_INFO for nonce {until}; saw {seen}")


def test_firmware_verdicts_on_every_device_frame_vector(fresh) -> None:
    """Each frame vector for the device: an ok frame is counted good, an invalid one under
    exactly its counter, and a foreign HELLO is answered exactly when the vector says."""
    board, h = fresh
    frames = [f for f in VECTORS["frames"] if f["receiver"] == P.DEVICE]
    assert len(frames) > 20
    before = board.raw_stats()
    for i, f in enumerate(frames):
        barrier = 0x5EED0000 + i
        h.write(b"\x00" + bytes.fromhex(f["hex"]))
        h.send(P.Hello(barrier))
        nonces = _device_info_nonces(h, barrier)
        after = board.raw_stats()
        want = dict.fromkeys(P.FrameError.KINDS, 0)
        good = 1  # the barrier
        if f["expect"] == "ok":
            good += 1
        else:
            want[f["expect"]] = 1
        got = {k: after[k] - before[k] for k in P.FrameError.KINDS}
        assert got == want, f["name"]
        assert after["frames_good"] - before["frames_good"] == good, f["name"]
        answers = [n for n in nonces if n != barrier]
        expected = [f["answer_nonce"]] if f.get("answer_nonce") is not None else []
        if f["expect"] == "ok" and f["type"] == P.T_HELLO:
            expected = [f["fields"]["nonce"]]
        assert answers == expected, f["name"]
        before = after


def test_firmware_passes_the_device_stream_vectors(fresh) -> None:
    """Each device stream vector yields the stated counts and answers. A stream that ends in
    the middle of a run (not counted yet) is checked as it stands, then ended with a 0x00:
    the board's counts must then be the Python receiver's on the same bytes."""
    board, h = fresh
    streams = [s for s in VECTORS["streams"] if s["receiver"] == P.DEVICE]
    assert streams
    before = board.raw_stats()
    for i, s in enumerate(streams):
        barrier = 0x57E40000 + i
        wire = bytes.fromhex(s["hex"])
        want = {k: s["expect_errors"].get(k, 0) for k in P.FrameError.KINDS}
        h.write(b"\x00" + wire)
        if not wire.endswith(b"\x00"):
            n_good = before["frames_good"] + len(s["expect_messages"])
            wait_until(lambda n=n_good: board.raw_stats()["frames_good"] >= n, what=s["name"])
            now = board.raw_stats()
            assert {k: now[k] - before[k] for k in P.FrameError.KINDS} == want, s["name"]
            ref = P.StreamDecoder(receiver=P.DEVICE)
            ref.feed(wire + b"\x00")
            want = ref.errors
            h.write(b"\x00")
        h.send(P.Hello(barrier))
        nonces = _device_info_nonces(h, barrier)
        after = board.raw_stats()
        got = {k: after[k] - before[k] for k in P.FrameError.KINDS}
        assert got == want, s["name"]
        assert after["frames_good"] - before["frames_good"] == len(s["expect_messages"]) + 1
        # the DEVICE_INFOs the stream must draw: its HELLOs' and its answered foreign HELLOs'
        hellos = [
            FRAMES[name]["fields"]["nonce"]
            for name in s["expect_messages"]
            if FRAMES[name]["type"] == P.T_HELLO
        ]
        answers = [n for n in nonces if n != barrier]
        assert sorted(answers) == sorted(hellos + s["expect_answers"]), s["name"]
        before = after


def test_firmware_receiver_survives_noisy_streams_and_accepts_no_false_frame(fresh) -> None:
    """The noisy streams of the codec comparison (valid vector frames with bit flips, dropped
    and inserted bytes), sent to the board: it keeps running (no reboot), counts exactly what
    the Python receiver counts on the same bytes, and every frame either accepts is one that
    was sent."""
    board, h = fresh
    rng = random.Random(99)
    valid = [bytes.fromhex(f["hex"]) for f in VECTORS["frames"]]
    stream = bytearray()
    for _ in range(150):  # 36 kB, 114 good frames and 850 errors of every kind
        s = bytearray(b"".join(rng.choice(valid) for _ in range(rng.randint(1, 12))))
        for _ in range(rng.randint(0, 6)):
            op, p = rng.random(), rng.randrange(len(s))
            if op < 0.6:
                s[p] ^= 1 << rng.randrange(8)
            elif op < 0.8:
                del s[p]
            else:
                s[p:p] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 300)))
        stream += s
    stream += b"\x00"  # end the last run: everything sent is counted
    ref = P.StreamDecoder(receiver=P.DEVICE)
    msgs = ref.feed(bytes(stream))
    sent = {P.encode(m) for m in (P.decode(v[:-1], None) for v in valid if _ok(v))}
    assert all(P.encode(m) in sent for m in msgs), "the reference accepted a frame never sent"
    boots = len(board.boots)
    before = board.raw_stats()
    for i in range(0, len(stream), 4096):
        h.write(bytes(stream[i : i + 4096]))
        h.got.clear()
        h.dec.feed(h.ser.read(h.ser.in_waiting))  # keep the board's replies flowing
    # QEMU's UART takes bytes a FIFO (16) at a time: on a loaded machine this takes seconds
    h.send(P.Hello(0xF022))
    wait_until(
        lambda: any(
            isinstance(m, P.DeviceInfo) and m.nonce == 0xF022
            for m in h.dec.feed(h.ser.read(h.ser.in_waiting or 1))
        ),
        60.0,
        "the barrier's DEVICE_INFO",
    )
    after = board.raw_stats()
    assert len(board.boots) == boots, f"the board rebooted: {board.boots}"
    assert {k: after[k] - before[k] for k in P.FrameError.KINDS} == ref.errors
    assert after["frames_good"] - before["frames_good"] == ref.good + 1  # + the barrier
    assert all(ref.errors.values()) and ref.good > 100  # the sample proves something


def _ok(wire: bytes) -> bool:
    try:
        P.decode(wire[:-1], None)
    except P.FrameError:
        return False
    return True


def _enable(h: RawHost, s: Session) -> None:
    s.event("hello")
    s.event("enable")


def test_firmware_clamps_each_joint_to_its_own_limit_and_counts_the_violation(fresh) -> None:
    board, h = fresh
    s = Session(h)
    _enable(h, s)
    h.send(P.TorqueCommand(1, 0, (5000, -100, -4000, 3500)))  # hip 40 N m, knee 35 N m
    tel = h.echo(1)
    assert tel.torque == (4000, -100, -3500, 3500)
    assert tel.fault_bits & P.FAULT_TORQUE_CLAMPED
    assert [j & P.JFAULT_TORQUE_CLAMPED for j in tel.joint_faults] == [1, 0, 1, 0]
    h.send(P.TorqueCommand(2, 0, (100, 0, 0, 0)))
    tel = h.echo(2)
    assert not tel.fault_bits & P.FAULT_TORQUE_CLAMPED and tel.torque == (100, 0, 0, 0)
    st = board.raw_stats()  # since this test's reset
    assert st["limit_violations"] == 1 and st["commands_applied"] == 2


def test_device_info_reports_the_limits_as_the_emulator_does(fresh) -> None:
    """The host compares each joint's reported torque limit with its configuration."""
    _, h = fresh
    h.send(P.Hello(77))
    info = h.expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == 77, "device info")
    assert info.joint_names == tuple(j.name for j in JOINTS)
    assert [j.torque_limit for j in info.joints] == [
        P.to_u16_count(j.torque_limit_nm, P.TORQUE_COUNTS_PER_NM, "limit") for j in JOINTS
    ]
    assert [(j.angle_min, j.angle_max) for j in info.joints] == [
        (P.to_count(j.angle_min_rad, 10000), P.to_count(j.angle_max_rad, 10000)) for j in JOINTS
    ]
    assert info.command_timeout_ms == 2000 and info.telemetry_period_us == 2000


def test_host_accepts_the_boards_firmware_version_with_the_shipped_configuration(board) -> None:
    """The board reports exofw-<firmware/VERSION>; the shipped device.accepted_device_ids
    accepts it (a new major version must update the configuration with it)."""
    from exoctl.config.schema import load_config
    from firmware_bridge.link import HostLink

    board.reset()
    link = HostLink(
        board.port or "",
        1_000_000,
        len(JOINTS),
        accepted_device_ids=load_config().device.accepted_device_ids,
    )
    link.open()
    try:
        assert link.handshake(timeout_s=5.0).device_id == f"exofw-{firmware_version()}"
    finally:
        link.close()


def test_estop_input_zeroes_torque_latches_and_refuses_enable(fresh) -> None:
    board, h = fresh
    s = Session(h)
    _enable(h, s)
    h.send(P.TorqueCommand(5, 0, (1000, 0, 0, 0)))
    assert h.echo(5).torque[0] == 1000
    board.press_estop()
    h.expect(lambda m: isinstance(m, P.EstopState) and m.pressed == 1, "e-stop pressed")
    tel = h.expect(lambda m: isinstance(m, P.Telemetry), "telemetry")
    assert tel.torque == (0, 0, 0, 0) and tel.flags & P.FLAG_ESTOP
    assert not tel.flags & P.FLAG_ENABLED and tel.fault_bits & P.FAULT_ESTOP
    assert s.request(P.Enable).result == P.ACK_ESTOP_ACTIVE
    board.release_estop()
    h.expect(lambda m: isinstance(m, P.EstopState) and m.pressed == 0, "e-stop released")
    assert s.request(P.Enable).result == P.ACK_FAULT_LATCHED
    assert s.request(P.ClearFaults).result == P.ACK_OK
    assert s.request(P.Enable).result == P.ACK_OK
    assert board.stats()["faults"][-1]["fault"] == "estop"


def test_host_silence_zeroes_torque_unpairs_and_latches(fresh) -> None:
    board, h = fresh
    s = Session(h)
    _enable(h, s)
    h.send(P.TorqueCommand(9, 0, (0, 700, 0, 0)))
    assert h.echo(9).torque[1] == 700
    # silence: the board's 2 s command timeout
    rep = h.expect(lambda m: isinstance(m, P.FaultReport), "fault report")
    assert rep.code == 0 and rep.latched == 1  # FAULT_HOST_TIMEOUT
    tel = h.expect(lambda m: isinstance(m, P.Telemetry), "telemetry")
    assert tel.torque == (0, 0, 0, 0) and not tel.flags & (P.FLAG_HANDSHAKEN | P.FLAG_ENABLED)
    assert board.raw_stats()["timeouts"] == 1
    s.event("hello")
    assert s.request(P.Enable).result == P.ACK_FAULT_LATCHED


def test_hung_main_loop_is_reset_by_the_watchdog_timer(fresh) -> None:
    """The bench hangs the firmware's main loop with interrupts off; the watchdog timer
    reboots the board, which comes back unpaired, torque off, telemetry restarted."""
    board, h = fresh
    s = Session(h)
    _enable(h, s)
    h.send(P.TorqueCommand(3, 0, (0, 0, 200, 0)))
    assert h.echo(3).torque[2] == 200
    boots = len(board.boots)
    board.hang()
    wait_until(lambda: len(board.boots) > boots, 5.0, "a watchdog reboot")
    # the board's first telemetry after the reboot: unpaired (before it, it was paired)
    tel = h.expect(
        lambda m: isinstance(m, P.Telemetry) and not m.flags & P.FLAG_HANDSHAKEN, "telemetry"
    )
    assert tel.torque == (0, 0, 0, 0) and tel.last_seq_applied == 0
