"""Loss and noise on a real pseudo-terminal: cable pull and replug, silent device, line noise,
e-stop and device faults, protocol version mismatch."""

from __future__ import annotations

import os
import threading
import time
import tty

import numpy as np
import pytest
import serial

from firmware_bridge import protocol as P
from firmware_bridge.emulator import FirmwareEmulator
from firmware_bridge.link import HostLink, LinkError

from .conftest import JOINTS, wait_until

HB = 0.02  # heartbeat period used by the link in these tests (the default)


def _connected(emu: FirmwareEmulator) -> HostLink:
    link = HostLink(emu.port, 1_000_000, n_joints=4, heartbeat_period_s=HB)
    link.open()
    link.handshake(timeout_s=2.0)
    wait_until(lambda: link.healthy, what="healthy link")
    assert link.enable(timeout_s=2.0), link.last_error
    return link


class Loop:
    """A stand-in for the control loop: send_torque at ~500 Hz on its own thread."""

    def __init__(self, link: HostLink, torque: np.ndarray | None = None) -> None:
        self.link = link
        self.sent: dict[int, tuple[int, ...]] = {}
        self.healthy_ticks = 0
        self.ticks = 0
        self.torque = torque
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        k = 0
        while not self._stop.is_set():
            k += 1
            # always within the limits unless a fixed torque is given
            tq = 10.0 * np.sin(0.01 * k + np.arange(4)) if self.torque is None else self.torque
            seq = self.link.send_torque(tq)
            # the link puts these counts on the wire, or zeros when not enabled and healthy
            self.sent[seq] = tuple(int(x) for x in np.rint(tq * 100.0))
            self.ticks += 1
            self.healthy_ticks += self.link.healthy
            time.sleep(0.002)

    def __enter__(self) -> Loop:
        self._t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._t.join(timeout=2.0)


def test_cable_pull_detected_assistance_off_and_link_comes_back(
    emulator: FirmwareEmulator,
) -> None:
    link = _connected(emulator)
    try:
        with Loop(link, torque=np.array([5.0, 5.0, 5.0, 5.0])):
            wait_until(
                lambda: emulator.stats()["applied_torque_nm"] == [5.0] * 4, what="assistance on"
            )
            emulator.pull_cable()
            wait_until(lambda: len(link.loss_times) == 1, what="loss detected")
            detect_s = link.loss_times[0] - emulator.pulled_at
            assert detect_s < 2 * HB, f"cable pull detected after {detect_s * 1e3:.1f} ms"
            assert not link.healthy and not link.enabled
            # the firmware, silent host: torque zero and host-timeout latched
            wait_until(lambda: emulator.stats()["timeouts"] == 1, what="device timeout")
            s = emulator.stats()
            assert s["applied_torque_nm"] == [0.0] * 4 and not s["enabled"]
            assert s["fault_bits"] & P.FAULT_HOST_TIMEOUT

            emulator.replug()  # same path, new pty
            wait_until(lambda: link.healthy, what="link back after replug")
            assert link.stats()["reconnects"] == 1
            # back, but assistance stays off until a person enables again
            time.sleep(0.1)
            assert not link.enabled and not emulator.stats()["enabled"]
            assert emulator.stats()["applied_torque_nm"] == [0.0] * 4
            tel = link.latest_telemetry()
            assert not tel.enabled and np.all(tel.torques == 0.0)

            assert link.enable(timeout_s=2.0), link.last_error
            wait_until(
                lambda: emulator.stats()["applied_torque_nm"] == [5.0] * 4,
                what="assistance on again after enable",
            )
        st = link.stats()
        assert st["link_losses"] == 1 and st["tx_errors"] >= 0
    finally:
        link.close()


def test_silent_device_detected_by_telemetry_timeout(emulator: FirmwareEmulator) -> None:
    link = _connected(emulator)
    try:
        with Loop(link) as loop:
            wait_until(lambda: loop.ticks > 20, what="loop running")
            emulator.set_mute(True)  # port open, no OS error: only the telemetry age tells
            wait_until(lambda: not link.healthy, timeout_s=2.0, what="unhealthy")
            assert link.telemetry_age_s() >= link.telemetry_timeout_s
            n_before = len(loop.sent)
            wait_until(lambda: len(loop.sent) > n_before + 5, what="more ticks")
            # the link sends zeros while unhealthy
            assert link.stats()["commands_zeroed"] >= 5
            emulator.set_mute(False)
            wait_until(lambda: link.healthy, what="healthy again")
    finally:
        link.close()


def test_line_noise_keeps_loop_running_and_never_applies_a_corrupted_command(
    emulator: FirmwareEmulator,
) -> None:
    emulator.set_bit_error_rate(1e-3)  # handshake and enable through the noise too
    link = _connected(emulator)
    try:
        with Loop(link) as loop:
            time.sleep(3.0)
        emulator.set_bit_error_rate(0.0)
        time.sleep(0.05)
        es, hs = emulator.stats(), link.stats()
        applied = list(emulator.applied_log)
        # nothing applied that the host did not send, bit for bit
        for seq, counts in applied:
            assert seq in loop.sent, f"applied seq {seq} was never sent"
            assert counts in (loop.sent[seq], (0, 0, 0, 0)), f"seq {seq}: {counts} not sent"
        # the loop kept running and the link stayed up
        assert loop.ticks > 200
        assert len(applied) > 0.6 * loop.ticks
        assert loop.healthy_ticks > 0.9 * loop.ticks
        assert es["timeouts"] == 0 and es["enabled"] and link.enabled
        # and the noise was seen and counted on both sides
        assert es["bits_corrupted"] > 0
        assert es["crc_errors"] + es["framing_errors"] + sum(es["frame_errors"].values()) > 0
        assert hs["crc_errors"] + hs["framing_errors"] > 0
        assert hs["seq_gaps"] > 0
    finally:
        link.close()


def test_estop_and_device_fault_remove_assistance(emulator: FirmwareEmulator) -> None:
    link = _connected(emulator)
    try:
        with Loop(link, torque=np.array([3.0, 3.0, 3.0, 3.0])):
            wait_until(lambda: emulator.stats()["applied_torque_nm"] == [3.0] * 4, what="on")
            emulator.press_estop()
            wait_until(lambda: not link.enabled, what="host drops enable on e-stop")
            wait_until(lambda: link.latest_telemetry().estop, what="estop in telemetry")
            assert emulator.stats()["applied_torque_nm"] == [0.0] * 4
            assert not link.enable(timeout_s=1.0)
            assert "result 3" in link.last_error  # ACK_ESTOP_ACTIVE
            emulator.release_estop()
            assert link.enable(timeout_s=2.0), link.last_error
            wait_until(lambda: emulator.stats()["applied_torque_nm"] == [3.0] * 4, what="on")

            emulator.inject_fault(P.FAULT_OVER_TEMPERATURE, joint=2)
            wait_until(lambda: not link.enabled, what="host drops enable on latched fault")
            assert "over_temperature" in link.stats()["device_faults"]
            assert not link.enable(timeout_s=1.0, clear_faults=False)
            assert "over_temperature" in link.last_error
    finally:
        link.close()


def test_command_stale_zeroes_torque_while_heartbeats_continue(
    emulator: FirmwareEmulator,
) -> None:
    link = _connected(emulator)
    try:
        with Loop(link, torque=np.array([4.0, 0.0, 0.0, 0.0])):
            wait_until(lambda: emulator.stats()["applied_torque_nm"][0] == 4.0, what="on")
        # control loop stopped; heartbeats go on: the device holds zero, stays enabled
        wait_until(lambda: emulator.stats()["fault_bits"] & P.FAULT_COMMAND_STALE, what="stale")
        s = emulator.stats()
        assert s["applied_torque_nm"] == [0.0] * 4 and s["enabled"] and s["timeouts"] == 0
        assert link.stats()["heartbeats_sent"] > 0 and link.healthy
    finally:
        link.close()


def test_firmware_reboot_drops_assistance_and_rehandshakes(emulator: FirmwareEmulator) -> None:
    link = _connected(emulator)
    try:
        with Loop(link, torque=np.array([2.0, 2.0, 2.0, 2.0])):
            wait_until(lambda: emulator.stats()["applied_torque_nm"] == [2.0] * 4, what="on")
            emulator.reset()
            wait_until(lambda: link.stats()["device_session_losses"] == 1, what="reset seen")
            wait_until(lambda: link.healthy, what="handshake repeated")
            assert not link.enabled
            time.sleep(0.05)
            s = emulator.stats()
            assert s["handshaken"] and not s["enabled"]
            assert s["applied_torque_nm"] == [0.0] * 4
            assert link.enable(timeout_s=2.0), link.last_error
            wait_until(lambda: emulator.stats()["applied_torque_nm"] == [2.0] * 4, what="on")
    finally:
        link.close()


def test_handshake_checks_joint_names_and_order(emulator: FirmwareEmulator) -> None:
    link = HostLink(emulator.port, 1_000_000, 4, joint_names=("hip_r", "hip_l", "knee_l", "knee_r"))
    link.open()
    try:
        with pytest.raises(LinkError, match="order matters"):
            link.handshake(timeout_s=2.0)
    finally:
        link.close()


def test_host_reports_protocol_version_mismatch(tmp_path) -> None:
    """A device speaking version 2 (built by hand on a pty) answers our Hello."""
    master, slave = os.openpty()
    tty.setraw(master)
    tty.setraw(slave)
    path = os.ttyname(slave)
    stop = threading.Event()

    def device() -> None:
        dec = P.StreamDecoder(receiver=P.DEVICE)
        while not stop.is_set():
            try:
                data = os.read(master, 1024)
            except OSError:
                return
            dec.feed(data)
            if dec.errors["version"] == 0 and dec.good:
                info = P.DeviceInfo(0, 100, 2000, "v2-dev", (P.JointInfo("j", 1, 0, 1),))
                os.write(master, P.encode(info, version=2))

    t = threading.Thread(target=device, daemon=True)
    t.start()
    link = HostLink(path, 1_000_000, n_joints=1)
    link.open()
    try:
        with pytest.raises(LinkError, match="version mismatch: host speaks 1, device .* 2"):
            link.handshake(timeout_s=2.0)
    finally:
        stop.set()
        link.close()
        os.close(master)
        os.close(slave)


def test_device_answers_foreign_version_hello_and_stays_unpaired(
    emulator: FirmwareEmulator,
) -> None:
    ser = serial.Serial(emulator.port, 1_000_000, timeout=0.05)
    try:
        ser.write(P.encode(P.Hello(99), version=7))
        dec = P.StreamDecoder()
        deadline = time.monotonic() + 5
        info = None
        while info is None and time.monotonic() < deadline:
            for m in dec.feed(ser.read(ser.in_waiting or 1)):
                if isinstance(m, P.DeviceInfo):
                    info = m
        assert info is not None and info.nonce == 99
        assert not emulator.stats()["handshaken"]
        assert len(info.joints) == len(JOINTS)
    finally:
        ser.close()
