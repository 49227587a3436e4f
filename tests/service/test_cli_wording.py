"""What the clinician CLI says: figures for people, and what happens to assistance."""

from __future__ import annotations

import pytest

from exoctl.service import commands as K


@pytest.mark.parametrize(
    "v, shown",
    [
        (-0.0, "0"),
        (-0.0004, "-0.0004"),
        (-0.00004, "0"),  # below the display resolution: no "-0"
        (-0.004, "-0.004"),
        (2640.0, "2640"),
        (13.94, "13.9"),
        (1.0, "1"),
        (2.60, "2.6"),
        (-6.891, "-6.89"),
        (0.3, "0.3"),
        (float("nan"), "-"),
    ],
)
def test_numbers_have_no_exponent_and_no_minus_zero(v: float, shown: str) -> None:
    assert K.fmt_num(v) == shown


def test_durations_in_microseconds_switch_to_milliseconds() -> None:
    assert K.fmt_us(640.0) == "640 us"
    assert K.fmt_us(2640.0) == "2.64 ms"
    assert K.fmt_us(None) == "-"


def test_assist_set_says_what_happens_to_assistance() -> None:
    gains = {"hip_l": 0.3, "hip_r": 0.3}
    on = K.assist_message({"assist_gain": gains, "safety_state": "NORMAL", "session": True})
    assert on.startswith("assistance changes to hip_l 0.3, hip_r 0.3, ramped")
    for state, why in (("ESTOP", "e-stop is latched"), ("FAULT_LATCHED", "fault is latched")):
        msg = K.assist_message({"assist_gain": gains, "safety_state": state, "session": True})
        assert "assistance stays OFF" in msg and why in msg and "fault clear" in msg
    idle = K.assist_message({"assist_gain": 0.4, "safety_state": "NORMAL", "session": False})
    assert "no session is running" in idle and "nothing is assisted" in idle


def test_fault_clear_says_assistance_resumes_ramped() -> None:
    msg = K.clear_message({"assist_gain": {"hip_l": 0.3}, "ramp_in_s": 1.0})
    assert msg == "fault cleared: assistance resumes at hip_l 0.3, ramping in over 1 s."
    assert "no session is running" in K.clear_message({"assist_gain": None})


def test_status_lists_faults_with_wall_clock_times_and_clears() -> None:
    st = {
        "daemon": {"version": "x", "pid": 1, "uptime_s": 3.0, "loop_healthy": True},
        "safety_state": "ESTOP",
        "loop": {
            "control_rate_hz": 500.0, "target_rate_hz": 500.0, "deadline_misses": 0,
            "window_s": 10, "loop_jitter_us": {"p99": 2640.0}, "tick_cost_us": {"p99": 40.0},
            "latency_ms": {"p99": 1.234},
        },
        "estimate_nm": {"hip_l": -0.0},
        "command_nm": {"hip_l": -0.0},
        "faults": [
            {"kind": "estop", "detail": "emergency stop", "wall_time": 1.7e9, "cleared_at": 1.7e9 + 9},
            {"kind": "estop", "detail": "emergency stop", "wall_time": 1.7e9 + 20, "cleared_at": None},
        ],
    }  # fmt: skip
    text = K.format_status(st)
    assert "safety ESTOP: e-stop, assistance OFF until a person clears it" in text
    assert "start error p99 2.64 ms" in text and "tick cost p99 40 us" in text
    assert "e+" not in text and " -0 " not in text and "-0\n" not in text
    first, second = [ln for ln in text.splitlines() if "estop: emergency stop" in ln]
    assert "(cleared " in first and "cleared" not in second
    assert first.split()[0].count(":") == 2  # HH:MM:SS
