"""Host link against the emulated firmware over a real pseudo-terminal (pyserial both ways)."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
import serial

from firmware_bridge import protocol as P
from firmware_bridge.emulator import FirmwareEmulator
from firmware_bridge.link import HostLink, LinkError

from .conftest import RawHost, wait_until


def test_handshake_enable_torque_echo_and_clamp(emulator: FirmwareEmulator) -> None:
    link = HostLink(emulator.port, 1_000_000, n_joints=4)
    link.open()
    try:
        info = link.handshake(timeout_s=2.0)
        assert info.device_id == "exo-emulator"
        assert info.joint_names == ("hip_l", "hip_r", "knee_l", "knee_r")
        assert info.torque_limit_nm == pytest.approx((40.0, 40.0, 35.0, 35.0))
        assert info.command_timeout_s == pytest.approx(0.1)
        wait_until(lambda: link.healthy, what="fresh telemetry")

        # before enable: the host sends zeros and the device refuses the command anyway
        link.send_torque(np.array([5.0, 5.0, 5.0, 5.0]))
        wait_until(lambda: emulator.stats()["commands_refused"] >= 1, what="refusal")
        assert emulator.stats()["commands_applied"] == 0

        assert link.enable(timeout_s=2.0), link.last_error
        cmd = np.array([12.346, -3.0, 50.0, -0.004])  # knee_l above the 35 N m limit
        seq = link.send_torque(cmd)
        wait_until(
            lambda: (t := link.latest_telemetry()) is not None and t.last_seq_applied == seq,
            what="telemetry echoing the command",
        )
        tel = link.latest_telemetry()
        assert tel.enabled and tel.handshaken and not tel.estop
        np.testing.assert_allclose(tel.torques, [12.35, -3.0, 35.0, 0.0], atol=1e-9)
        assert tel.fault_bits & P.FAULT_TORQUE_CLAMPED
        assert list(tel.joint_faults) == [0, 0, P.JFAULT_TORQUE_CLAMPED, 0]
        s = emulator.stats()
        assert s["limit_violations"] == 1 and s["commands_applied"] == 1
        st = link.stats()
        assert st["commands_sent"] == 2 and st["rtt_ms"]["count"] >= 1
        assert st["crc_errors"] == 0 and st["framing_errors"] == 0
        assert sum(c for _, c in st["rtt_ms"]["histogram"]) == st["rtt_ms"]["count"]
        assert st["rtt_ms"]["p50"] <= st["rtt_ms"]["p99"] <= st["rtt_ms"]["max"] * 1.05
        json.dumps(st, allow_nan=False)  # the daemon and the HIL report serialise it
        json.dumps(emulator.stats(), allow_nan=False)

        assert link.disable(timeout_s=2.0)
        wait_until(lambda: not emulator.stats()["enabled"], what="device disabled")
    finally:
        link.close()


def test_handshake_rejects_wrong_joint_count(emulator: FirmwareEmulator) -> None:
    link = HostLink(emulator.port, 1_000_000, n_joints=2)
    link.open()
    try:
        with pytest.raises(LinkError, match="4 joints"):
            link.handshake(timeout_s=2.0)
        assert not link.healthy
    finally:
        link.close()


def test_open_missing_port_is_a_clear_error(tmp_path) -> None:
    with pytest.raises(LinkError, match="cannot open serial port"):
        HostLink(str(tmp_path / "nope"), 1_000_000, 4).open()


def test_device_zeroes_torque_and_latches_on_host_silence(emulator: FirmwareEmulator) -> None:
    """A bare pyserial host: handshake, enable, one command, then silence."""
    ser = serial.Serial(emulator.port, 1_000_000, timeout=0.05)
    dec = P.StreamDecoder()
    got: list[P.Message] = []

    def expect(pred, what: str) -> P.Message:
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            for m in got:
                if pred(m):
                    return m
            got.extend(dec.feed(ser.read(ser.in_waiting or 1)))
        raise AssertionError(f"no {what}")

    try:
        ser.write(P.encode(P.TorqueCommand(1, 0, (100, 100, 100, 100))))  # before Hello
        ser.write(P.encode(P.Hello(77)))
        info = expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == 77, "device info")
        assert info.n_joints == 4
        ser.write(P.encode(P.Enable(5)))
        ack = expect(lambda m: isinstance(m, P.Ack) and m.request_id == 5, "ack")
        assert ack.result == P.ACK_OK and ack.state == P.STATE_ENABLED
        ser.write(P.encode(P.TorqueCommand(10, 0, (1000, 0, 0, 0))))
        expect(
            lambda m: (
                isinstance(m, P.Telemetry) and m.last_seq_applied == 10 and m.torque[0] == 1000
            ),
            "echo",
        )
        # now silent: the device must zero torque, latch HOST_TIMEOUT and report it
        rep = expect(lambda m: isinstance(m, P.FaultReport) and m.latched, "fault report")
        assert rep.code == 0 and rep.fault_bits & P.FAULT_HOST_TIMEOUT
        got.clear()
        tel = expect(lambda m: isinstance(m, P.Telemetry), "telemetry after timeout")
        assert tel.torque == (0, 0, 0, 0)
        assert not tel.flags & P.FLAG_ENABLED and not tel.flags & P.FLAG_HANDSHAKEN
        assert tel.fault_bits & P.FAULT_HOST_TIMEOUT
        # enable after a new Hello is refused until the fault is cleared
        ser.write(P.encode(P.Hello(78)))
        expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == 78, "device info")
        ser.write(P.encode(P.Enable(6)))
        ack = expect(lambda m: isinstance(m, P.Ack) and m.request_id == 6, "ack")
        assert ack.result == P.ACK_FAULT_LATCHED
        ser.write(P.encode(P.ClearFaults(7)) + P.encode(P.Enable(8)))
        ack = expect(lambda m: isinstance(m, P.Ack) and m.request_id == 8, "ack")
        assert ack.result == P.ACK_OK
        s = emulator.stats()
        assert s["timeouts"] == 1 and s["commands_applied"] == 1
        assert s["commands_refused"] == 1  # the one before Hello
    finally:
        ser.close()


def test_send_torque_from_two_threads_never_mixes_frames(emulator: FirmwareEmulator) -> None:
    """The control loop and an e-stop request may both call send_torque."""
    import threading

    link = HostLink(emulator.port, 1_000_000, n_joints=4)
    link.open()
    try:
        link.handshake(timeout_s=2.0)
        assert link.enable(timeout_s=2.0), link.last_error
        a, b = np.array([1.0, 2.0, 3.0, 4.0]), np.array([-5.0, -6.0, -7.0, -8.0])

        def hammer(t: np.ndarray) -> None:
            for _ in range(1500):
                link.send_torque(t)

        threads = [threading.Thread(target=hammer, args=(t,)) for t in (a, b)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
        wait_until(
            lambda: emulator.stats()["commands_received"] == link.stats()["commands_sent"],
            what="all frames received",
        )
        # every frame the link counted as sent arrived whole (a burst this size overfills the
        # pty: those frames are dropped and counted by the link as would-block, not as sent)
        s = emulator.stats()
        assert s["commands_applied"] == s["commands_received"]
        allowed = {(100, 200, 300, 400), (-500, -600, -700, -800), (0, 0, 0, 0)}
        assert {c for _, c in emulator.applied_log} <= allowed
    finally:
        link.close()


def test_device_rules_sequence_joint_count_and_clear(emulator: FirmwareEmulator) -> None:
    h = RawHost(emulator.port)
    try:
        h.send(P.Enable(1))
        assert h.ack(1).result == P.ACK_NOT_HANDSHAKEN
        h.send(P.Disable(2))
        assert h.ack(2).result == P.ACK_OK  # disable always succeeds
        h.send(P.Hello(5))
        h.expect(lambda m: isinstance(m, P.DeviceInfo) and m.nonce == 5, "device info")
        h.send(P.Enable(3))
        ack = h.ack(3)
        assert (ack.result, ack.state, ack.request_type) == (P.ACK_OK, P.STATE_ENABLED, P.T_ENABLE)
        h.send(P.TorqueCommand(100, 0, (100, 0, 0, 0)))
        assert h.echo(100).torque == (100, 0, 0, 0)
        # an older or repeated sequence number is never applied
        h.send(P.TorqueCommand(99, 0, (999, 0, 0, 0)), P.TorqueCommand(100, 0, (999, 0, 0, 0)))
        h.send(P.TorqueCommand(105, 0, (200, 0, 0, 0)))  # a gap of 4: applied, counted
        assert h.echo(105).torque == (200, 0, 0, 0)
        s = emulator.stats()
        assert s["commands_out_of_order"] == 2 and s["seq_gaps"] == 4
        assert all(c[0] != 999 for _, c in emulator.applied_log)
        # wrong joint count: refused, BAD_COMMAND reported (status, not latched)
        h.send(P.TorqueCommand(106, 0, (1, 2)))
        rep = h.expect(lambda m: isinstance(m, P.FaultReport), "bad command report")
        assert rep.code == 7 and rep.latched == 0
        h.send(P.TorqueCommand(107, 0, (300, 0, 0, 0)))
        tel = h.echo(107)
        assert tel.torque == (300, 0, 0, 0) and tel.fault_bits & P.FAULT_BAD_COMMAND
        h.send(P.ClearFaults(4))
        ack = h.ack(4)
        assert ack.result == P.ACK_OK and not ack.fault_bits & P.FAULT_BAD_COMMAND
        assert ack.state == P.STATE_ENABLED  # clearing never changes the mode
        h.send(P.Disable(5))
        assert h.ack(5).state == P.STATE_DISABLED
        h.send(P.TorqueCommand(108, 0, (400, 0, 0, 0)))
        h.send(P.Heartbeat(0, 108))
        tel = h.expect(lambda m: isinstance(m, P.Telemetry) and not m.flags & 1, "telemetry")
        assert tel.torque == (0, 0, 0, 0) and tel.last_seq_applied == 107
        wait_until(lambda: emulator.stats()["commands_refused"] >= 2, what="refusal")
        assert all(seq != 108 for seq, _ in emulator.applied_log)
    finally:
        h.ser.close()


# ------------------------------------------------------------- the device's own torque limits
def test_handshake_refuses_a_configured_limit_above_the_devices(emulator) -> None:
    """The emulator reports 40 N m for hip_r in DEVICE_INFO; a configuration of 45 N m is
    refused at the handshake, naming the joint and both limits."""
    names = ("hip_l", "hip_r", "knee_l", "knee_r")
    link = HostLink(
        emulator.port, 1_000_000, 4, joint_names=names, torque_limits_nm=[40.0, 45.0, 35.0, 35.0]
    )
    link.open()
    try:
        with pytest.raises(LinkError) as e:
            link.handshake(timeout_s=2.0)
        msg = str(e.value)
        assert "joint hip_r" in msg and "45 N m" in msg and "own limit 40 N m" in msg, msg
        assert "\n" not in msg
        assert not link.healthy
    finally:
        link.close()


@pytest.mark.parametrize("limits", [[40.0, 40.0, 35.0, 35.0], [40.0, 39.99, 20.0, 0.5]])
def test_handshake_accepts_limits_at_or_below_the_devices(emulator, limits) -> None:
    names = ("hip_l", "hip_r", "knee_l", "knee_r")
    link = HostLink(emulator.port, 1_000_000, 4, joint_names=names, torque_limits_nm=limits)
    link.open()
    try:
        info = link.handshake(timeout_s=2.0)
        assert info.torque_limit_nm == pytest.approx((40.0, 40.0, 35.0, 35.0))
    finally:
        link.close()


def test_controller_refuses_to_start_on_a_device_with_lower_limits(tmp_path) -> None:
    """The controller hands the configured limits to the link: a device whose hip_r gives
    30 N m, with the configuration's 40 N m, stops start-up at the handshake (the EMG, found
    first, is a replay file here so that no LSL stream is needed)."""
    import numpy as np

    from exoctl.config.schema import load_config
    from exoctl.runtime.controller import Controller
    from firmware_bridge.emulator import EmulatedJoint

    from .conftest import JOINTS

    weak = [EmulatedJoint("hip_r", 30.0, -0.5, 1.8) if j.name == "hip_r" else j for j in JOINTS]
    emu = FirmwareEmulator(weak, command_timeout_s=0.1, telemetry_period_s=0.002)
    emu.start()
    try:
        base = load_config()
        emg = tmp_path / "emg.npz"
        n_ch = len(base.emg.muscles)
        np.savez(emg, emg=np.zeros((4000, n_ch), np.float32), fs_hz=base.emg.sampling_rate_hz)
        cfg = base.with_overrides(
            device={"serial": {"port": emu.port}},
            emg={"source": "replay", "replay": {"path": str(emg), "loop": True}},
        )
        ctl = Controller(cfg)
        try:
            with pytest.raises(LinkError, match=r"joint hip_r: .* 40 N m is above .* 30 N m"):
                ctl.start(handshake_timeout_s=2.0)
        finally:
            ctl.shutdown(ramp_out=False)
    finally:
        emu.stop()


# ------------------------------------------------------------- the device's id (firmware version)
def _id_emulator(device_id: str) -> FirmwareEmulator:
    from .conftest import JOINTS

    emu = FirmwareEmulator(
        JOINTS, command_timeout_s=0.1, telemetry_period_s=0.002, device_id=device_id
    )
    emu.start()
    return emu


DEFAULT_IDS = ["exofw-1.*", "exoctl-hil-emu"]  # the shipped configuration's


@pytest.mark.parametrize("device_id", ["exofw-1.0.0", "exofw-1.12.3", "exoctl-hil-emu"])
def test_handshake_accepts_a_device_id_the_configuration_accepts(device_id) -> None:
    from exoctl.config.schema import load_config

    assert load_config().device.accepted_device_ids == DEFAULT_IDS
    emu = _id_emulator(device_id)
    link = HostLink(emu.port, 1_000_000, 4, accepted_device_ids=DEFAULT_IDS)
    link.open()
    try:
        assert link.handshake(timeout_s=2.0).device_id == device_id
    finally:
        link.close()
        emu.stop()


@pytest.mark.parametrize("device_id", ["exofw-2.0.0", "exofw-10.0.0", "EXOFW-1.0.0", "exo-emu"])
def test_handshake_refuses_a_device_id_the_configuration_does_not_accept(device_id) -> None:
    """A newer major firmware (or an unknown device) is refused in plain words, naming the id
    and the accepted patterns."""
    emu = _id_emulator(device_id)
    link = HostLink(emu.port, 1_000_000, 4, accepted_device_ids=DEFAULT_IDS)
    link.open()
    try:
        with pytest.raises(LinkError) as e:
            link.handshake(timeout_s=2.0)
        msg = str(e.value)
        assert f"device {device_id!r} is not an accepted device" in msg, msg
        assert "'exofw-1.*'" in msg and "accepted_device_ids" in msg and "\n" not in msg
        assert not link.healthy
    finally:
        link.close()
        emu.stop()


def test_host_link_refuses_an_empty_list_of_accepted_ids() -> None:
    with pytest.raises(ValueError, match="accepted_device_ids is empty"):
        HostLink("/dev/null", 1_000_000, 4, accepted_device_ids=[])


def test_controller_refuses_to_start_on_a_device_id_not_accepted(tmp_path) -> None:
    """The controller hands device.accepted_device_ids to the link: a firmware 2.x device
    stops start-up at the handshake with the shipped configuration."""
    import numpy as np

    from exoctl.config.schema import load_config
    from exoctl.runtime.controller import Controller

    emu = _id_emulator("exofw-2.0.0")
    try:
        base = load_config()
        emg = tmp_path / "emg.npz"
        n_ch = len(base.emg.muscles)
        np.savez(emg, emg=np.zeros((4000, n_ch), np.float32), fs_hz=base.emg.sampling_rate_hz)
        cfg = base.with_overrides(
            device={"serial": {"port": emu.port}},
            emg={"source": "replay", "replay": {"path": str(emg), "loop": True}},
        )
        ctl = Controller(cfg)
        try:
            with pytest.raises(LinkError, match=r"'exofw-2.0.0' is not an accepted device"):
                ctl.start(handshake_timeout_s=2.0)
        finally:
            ctl.shutdown(ramp_out=False)
    finally:
        emu.stop()
