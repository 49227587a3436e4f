"""Rules between settings that are each in range but wrong together, checked at load time.

A heartbeat slower than the firmware's command timeout, a band-pass edge above Nyquist, an EMG
chunk longer than its watchdog, a socket path too long for its e-stop socket beside it: each
field passes its own validation, and the combination fails later, at run time, in a way that
reads like a fault. ``Config`` runs these after its fields validate; each problem is a (key,
message) pair that the loader turns into one located line.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from exoctl.config.schema import Config


# Periods and the timeouts they feed. A timeout fires when its input has been silent for that
# long, so each must leave room for the period plus the lateness of a loaded machine:
# the rule is period <= timeout / 2 for a plain timeout and period <= timeout / 4 for a
# watchdog with a degraded level at half its timeout (safety.emg_timeout_s), so that one late
# arrival is neither a fault nor a degraded flicker. The measured lateness behind the default
# timeouts is in docs/deploy.md ("Watchdog timeouts").
def cross_field_problems(cfg: Config) -> list[tuple[tuple[str, ...], str]]:
    """Every problem between settings that are each in range; (key, message) pairs."""
    out: list[tuple[tuple[str, ...], str]] = []
    dev, saf, ctl, emg = cfg.device, cfg.safety, cfg.control, cfg.emg

    joints = set(dev.joint_names)
    missing = sorted(joints - set(ctl.assist_gain))
    extra = sorted(set(ctl.assist_gain) - joints)
    if missing or extra:
        out.append(
            (
                ("control", "assist_gain"),
                f"must name exactly the device joints {sorted(joints)}"
                + (f"; missing {missing}" if missing else "")
                + (f"; not a device joint {extra}" if extra else ""),
            )
        )

    timeout = dev.command_timeout_s
    # The link sends a heartbeat when it has sent nothing for a period, checking every quarter
    # period: the firmware may see up to 1.25 periods of silence before any lateness.
    if dev.heartbeat_period_s > timeout / 2:
        out.append(
            (
                ("device", "heartbeat_period_s"),
                f"{dev.heartbeat_period_s:g} s must be at most half of device.command_timeout_s "
                f"({timeout:g} s): the firmware removes torque after that much host silence, "
                "and an idle link sends only heartbeats",
            )
        )
    tick = 1.0 / ctl.rate_hz
    if tick > timeout / 2:
        out.append(
            (
                ("device", "command_timeout_s"),
                f"{timeout:g} s must be at least two control ticks ({2 * tick:g} s at "
                f"control.rate_hz {ctl.rate_hz:g}): the firmware holds zero torque when no "
                "command arrives for that long",
            )
        )
    if tick > saf.safe_stop_s / 2:
        out.append(
            (
                ("safety", "safe_stop_s"),
                f"{saf.safe_stop_s:g} s must be at least two control ticks ({2 * tick:g} s at "
                f"control.rate_hz {ctl.rate_hz:g}): the safe-stop ramp takes half of it and "
                "torque must be zero within it",
            )
        )
    flush = cfg.service.flush_interval_s
    if flush > saf.recording_timeout_s / 2:
        out.append(
            (
                ("safety", "recording_timeout_s"),
                f"{saf.recording_timeout_s:g} s must be at least twice service.flush_interval_s "
                f"({flush:g} s): the recorder commits that often, so a healthy recording would "
                "look stalled",
            )
        )
    chunk_s = cfg.simulator.emg_chunk_samples / emg.sampling_rate_hz
    if chunk_s > saf.emg_timeout_s / 4:
        out.append(
            (
                ("simulator", "emg_chunk_samples"),
                f"{cfg.simulator.emg_chunk_samples} samples at {emg.sampling_rate_hz:g} Hz arrive "
                f"every {chunk_s:g} s: more than a quarter of safety.emg_timeout_s "
                f"({saf.emg_timeout_s:g} s), so every chunk would look stale",
            )
        )

    nyquist = emg.sampling_rate_hz / 2
    lo, hi = cfg.estimator.bandpass_hz
    raw = cfg.estimator.input == "raw"  # envelopes made elsewhere are not filtered here
    if raw and hi >= nyquist:
        out.append(
            (
                ("estimator", "bandpass_hz"),
                f"high edge {hi:g} Hz must be below the Nyquist frequency {nyquist:g} Hz "
                f"(emg.sampling_rate_hz {emg.sampling_rate_hz:g})",
            )
        )
    if raw and cfg.estimator.envelope_hz >= nyquist:
        out.append((("estimator", "envelope_hz"), f"must be below {nyquist:g} Hz (Nyquist)"))
    if ctl.smoothing_hz is not None and ctl.smoothing_hz >= ctl.rate_hz / 2:
        out.append(
            (
                ("control", "smoothing_hz"),
                f"{ctl.smoothing_hz:g} Hz must be below the control loop's Nyquist frequency "
                f"{ctl.rate_hz / 2:g} Hz (control.rate_hz {ctl.rate_hz:g})",
            )
        )
    every = cfg.estimator.model_every_ticks
    hold = every / ctl.rate_hz
    if hold > saf.estimate_timeout_s / 4:
        out.append(
            (
                ("estimator", "model_every_ticks"),
                f"{every} ticks at control.rate_hz {ctl.rate_hz:g} hold an estimate for "
                f"{hold:g} s: more than a quarter of safety.estimate_timeout_s "
                f"({saf.estimate_timeout_s:g} s), so every held estimate would look stale; "
                f"allowed here: 1 to {max(1, int(saf.estimate_timeout_s / 4 * ctl.rate_hz))}",
            )
        )
    too_long = socket_path_too_long(cfg.service.socket_path)
    if too_long:
        out.append((("service", "socket_path"), f"{too_long}; choose a shorter directory"))
    return out


AF_UNIX_PATH_MAX = 107  # sun_path is 108 bytes with its terminating NUL (Linux)
_ESTOP_EXTRA = len(".estop")  # control.sock -> control.estop.sock (service.rpc.estop_socket_path)


def socket_path_too_long(path: str | os.PathLike[str]) -> str | None:
    """Why a control socket path cannot be bound, or None. The e-stop socket beside it is 6
    bytes longer, and a Unix socket's path holds at most 107 bytes: too long fails only when
    the daemon binds, so the configuration (and ``exoctl bench up``'s ``--dir``) is checked."""
    n = len(os.fsencode(os.fspath(path)))
    if n + _ESTOP_EXTRA <= AF_UNIX_PATH_MAX:
        return None
    return (
        f"{n} bytes long: with its e-stop socket beside it (+{_ESTOP_EXTRA} bytes) it exceeds "
        f"the {AF_UNIX_PATH_MAX} bytes a Unix socket's path may hold"
    )
