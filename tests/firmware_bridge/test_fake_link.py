"""The Link protocol and the in-process FakeLink: both links provide every member the protocol
names, with the same signature; the fake behaves like HostLink + the emulated firmware on the
same script (over a real pty); and its fault injection does what a bench would."""

from __future__ import annotations

import inspect

import numpy as np
import pytest

from firmware_bridge import protocol as P
from firmware_bridge.emulator import FirmwareEmulator
from firmware_bridge.fake_link import FakeLink
from firmware_bridge.link import HostLink, LinkError
from firmware_bridge.link_api import Link, LinkThread

from .conftest import JOINTS, wait_until

NAMES = [j.name for j in JOINTS]
LIMITS = [j.torque_limit_nm for j in JOINTS]
MEMBERS = sorted(n for n in vars(Link) if not n.startswith("_"))


class Clock:
    """A clock the test moves by hand (the fake link stamps telemetry with it)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_protocol_names_what_the_loop_and_the_controller_use() -> None:
    assert MEMBERS == [
        "clear_faults", "close", "disable", "enable", "enabled", "handshake", "healthy",
        "last_error", "latest_telemetry", "open", "send_torque", "stats", "threads",
    ]  # fmt: skip


@pytest.mark.parametrize("cls", [HostLink, FakeLink])
@pytest.mark.parametrize("name", MEMBERS)
def test_both_links_provide_every_member_with_its_signature(cls, name) -> None:
    proto = vars(Link)[name]
    if isinstance(proto, property):
        if name == "last_error":  # a plain attribute satisfies a read-only property
            link = cls("/dev/null", 1, 4) if cls is HostLink else cls(NAMES)
            assert hasattr(link, name)
        else:
            assert isinstance(getattr(cls, name), property)
        return
    want = inspect.signature(proto)
    got = inspect.signature(getattr(cls, name))
    assert [(p.name, p.default) for p in got.parameters.values()] == [
        (p.name, p.default) for p in want.parameters.values()
    ]


def test_fake_is_a_link_at_run_time() -> None:
    assert isinstance(FakeLink(NAMES), Link)


def _script(link) -> list:
    """The same person's sequence on either link; what each step observed."""
    out = []
    link.open()
    try:
        info = link.handshake(timeout_s=2.0)
        out.append(("info", info.joint_names, info.torque_limit_nm, info.command_timeout_s))
        wait_until(lambda: link.healthy, what="fresh telemetry")
        link.send_torque(np.array([5.0, 5.0, 5.0, 5.0]))  # before Enable: zeros
        out.append(("zeroed", link.stats()["commands_zeroed"], link.enabled))
        out.append(("enable", link.enable(timeout_s=2.0)))
        seq = link.send_torque(np.array([12.346, -3.0, 50.0, -0.004]))
        wait_until(lambda: link.latest_telemetry().last_seq_applied == seq, what="echo")
        tel = link.latest_telemetry()
        out.append(("applied", tel.torques.round(6).tolist(), tel.enabled, tel.handshaken))
        out.append(("clamped", bool(tel.fault_bits & P.FAULT_TORQUE_CLAMPED)))
        out.append(("joint_faults", tel.joint_faults.tolist()))
        out.append(("disable", link.disable(timeout_s=2.0), link.enabled))
        link.send_torque(np.array([1.0, 1.0, 1.0, 1.0]))
        out.append(("zeroed", link.stats()["commands_zeroed"]))
        with pytest.raises(ValueError, match="finite"):
            link.send_torque(np.array([np.nan, 0.0, 0.0, 0.0]))
        with pytest.raises(ValueError, match="shape"):
            link.send_torque(np.zeros(3))
    finally:
        link.close()
    return out


def test_fake_behaves_like_the_real_link_on_the_same_script(emulator: FirmwareEmulator) -> None:
    real = _script(HostLink(emulator.port, 1_000_000, n_joints=4, joint_names=NAMES))
    fake = _script(FakeLink(NAMES, torque_limits_nm=LIMITS, device_id="exo-emulator"))
    assert fake == real
    assert ("applied", [12.35, -3.0, 35.0, 0.0], True, True) in real


def test_real_link_hands_out_its_threads_by_role(emulator: FirmwareEmulator) -> None:
    link = HostLink(emulator.port, 1_000_000, n_joints=4)
    assert link.threads() == {}
    link.open()
    try:
        threads = link.threads()
        assert set(threads) == {LinkThread.READER, LinkThread.SUPERVISOR}
        assert all(t.is_alive() and t.native_id for t in threads.values())
    finally:
        link.close()
    assert link.threads() == {}


def _enabled_fake(clock: Clock | None = None) -> FakeLink:
    link = FakeLink(NAMES, torque_limits_nm=LIMITS, clock=clock or Clock())
    link.open()
    link.handshake()
    assert link.enable()
    return link


def test_every_command_is_recorded_with_what_went_on_the_wire() -> None:
    link = FakeLink(NAMES, torque_limits_nm=LIMITS)
    link.open()
    link.send_torque(np.ones(4))  # not even handshaken: zeros
    link.handshake()
    link.send_torque(np.ones(4))  # not enabled: zeros
    assert link.enable()
    link.send_torque(np.array([1.004, -2.0, 3.0, 0.0]))
    assert [f.seq for f in link.frames] == [1, 2, 3]
    assert all(f.delivered for f in link.frames)
    np.testing.assert_array_equal(link.frames[0].requested, np.ones(4))
    np.testing.assert_allclose(
        link.wire_torques(), [[0, 0, 0, 0], [0, 0, 0, 0], [1.0, -2.0, 3.0, 0.0]], atol=1e-12
    )
    assert [(what, ok) for _, what, ok in link.requests] == [
        ("hello", True), ("clear_faults", True), ("enable", True),
    ]  # fmt: skip


def test_pulled_cable_stops_assistance_and_a_long_pull_latches_host_timeout() -> None:
    clock = Clock()
    link = _enabled_fake(clock)
    link.pull_cable()
    assert not link.healthy and not link.enabled
    assert link.last_error == "link lost: cable pulled"
    link.send_torque(np.ones(4))
    assert not link.frames[-1].delivered and link.stats()["tx_errors"] == 1
    tel_before = link.latest_telemetry()
    clock.t += 0.5
    assert link.latest_telemetry() is tel_before  # nothing new arrives
    link.plug_cable()  # the handshake is repeated, never the enable
    assert link.healthy and not link.enabled
    assert link.latest_telemetry().fault_bits & P.FAULT_HOST_TIMEOUT
    assert not link.enable(clear_faults=False)  # the latched fault refuses it
    assert link.enable()  # a person's enable clears it first
    assert link.latest_telemetry().fault_bits == 0
    s = link.stats()
    assert s["link_losses"] == 1 and s["reconnects"] == 1


def test_reset_fault_bits_and_estop() -> None:
    link = _enabled_fake()
    link.reset_device()
    assert link.healthy and not link.enabled  # re-handshaken, never re-enabled
    assert link.stats()["device_session_losses"] == 1
    assert link.enable()

    link.raise_fault(P.FAULT_OVER_TEMPERATURE)  # latched: the device drops out
    tel = link.latest_telemetry()
    assert not link.enabled and not tel.enabled and tel.faults == ("over_temperature",)
    assert link.clear_faults() and link.latest_telemetry().fault_bits == 0
    assert link.enable()

    link.raise_fault(P.FAULT_ANGLE_LIMIT)  # status: shown, nothing latched
    assert link.enabled and link.latest_telemetry().fault_bits == P.FAULT_ANGLE_LIMIT
    link.end_fault(P.FAULT_ANGLE_LIMIT)
    assert link.latest_telemetry().fault_bits == 0

    link.press_estop()
    assert not link.enabled and link.latest_telemetry().estop
    assert not link.enable() and not link.clear_faults()
    link.release_estop()
    assert link.latest_telemetry().fault_bits == P.FAULT_ESTOP  # latched until cleared
    assert link.enable()

    link.reset_device(rehandshake=False)
    assert not link.healthy and not link.enable()
    link.handshake()
    assert link.healthy


def test_stalled_telemetry_ages_into_an_unhealthy_link_and_gates_torque() -> None:
    clock = Clock()
    link = _enabled_fake(clock)
    link.set_joint_state(angles=[0.1, 0.2, 0.3, 0.4], velocities=[0, 0, 0, np.nan])
    tel = link.latest_telemetry()
    assert tel.angles.tolist() == [0.1, 0.2, 0.3, 0.4] and np.isnan(tel.velocities[3])
    link.stall()
    clock.t += 0.05
    assert link.healthy and link.latest_telemetry() is tel
    clock.t += 0.06  # 0.11 s > telemetry_timeout_s
    assert not link.healthy
    link.send_torque(np.ones(4))
    assert link.frames[-1].wire.tolist() == [0.0] * 4
    link.resume()
    assert link.healthy and link.latest_telemetry().host_time == clock.t


def test_device_with_other_joints_is_refused() -> None:
    link = FakeLink(NAMES, device_joint_names=["hip_l", "hip_r", "knee_r", "knee_l"])
    link.open()
    with pytest.raises(LinkError, match="order matters"):
        link.handshake()
    assert not link.healthy
    with pytest.raises(LinkError, match="before open"):
        FakeLink(NAMES).handshake()
    link.answers = False
    with pytest.raises(LinkError, match="timed out"):
        link.handshake()


def test_configured_limit_above_the_pretend_devices_is_refused() -> None:
    """As HostLink: a host configured for more torque than the device gives is refused."""
    above = [*LIMITS[:2], LIMITS[2] + 1.0, LIMITS[3]]
    link = FakeLink(NAMES, torque_limits_nm=LIMITS, configured_limits_nm=above)
    link.open()
    with pytest.raises(LinkError, match=rf"joint {NAMES[2]}: .* above the device's own limit"):
        link.handshake()
    assert not link.healthy
    ok = FakeLink(NAMES, torque_limits_nm=LIMITS, configured_limits_nm=LIMITS)
    ok.open()
    assert ok.handshake().torque_limit_nm == pytest.approx(tuple(LIMITS))


def test_fake_link_refuses_a_device_id_not_accepted_as_host_link_does() -> None:
    link = FakeLink(NAMES, device_id="exofw-2.0.0", accepted_device_ids=["exofw-1.*"])
    link.open()
    with pytest.raises(LinkError, match=r"'exofw-2.0.0' is not an accepted device"):
        link.handshake()
    ok = FakeLink(NAMES, device_id="exofw-1.0.0", accepted_device_ids=["exofw-1.*"])
    ok.open()
    assert ok.handshake().device_id == "exofw-1.0.0"
