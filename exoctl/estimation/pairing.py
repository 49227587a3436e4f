"""Pairing EMG and joint kinematics by their time stamps, on one clock.

A network that takes joint angles and velocities beside EMG was trained on rows in which both
describe the same instant. Live they come from two devices at their own rates, over their own
transports: the EMG over LSL, stamped by the amplifier's host; the kinematics in the
firmware's telemetry, stamped by the firmware's clock. Taking "whatever came last" of each
pairs EMG of one instant with angles of another, and the gap changes with every scheduling
hiccup (a telemetry frame a few milliseconds late moves a hip estimate that leans on the
angles by tens of N m). So the estimator pairs them by time:

- the device's telemetry time is mapped onto the host's clock (``DeviceClock``; the host's
  monotonic clock is LSL's local clock on Linux, so the EMG stamps are on it too);
- each input keeps its newest samples with their times (``KinematicsHistory``, and the EMG's
  ``exoctl.signal.tick_grid.TickCarrier``);
- an estimate is made for the newest instant both inputs cover (``paired_time``): no later
  than the tick, than the newest telemetry sample, nor than the newest EMG sample allows the
  EMG's carry rule (one sample late) to be exact. Both inputs are read at that instant.

Nothing is extrapolated and nothing is compensated: an estimate for an instant a little
before the tick is a few milliseconds late, which the replay's summary reports as the live
path's delay. An input that stalls (a stream that stops, a silent firmware) is waited for:
the estimate holds rather than pairing the other input with a stale value (on the HIL bench,
angles 100 ms stale beside current EMG moved a hip estimate by hundreds of N m); the safety
layer's EMG and telemetry watchdogs act on the stall by the inputs' ages, as before.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["DeviceClock", "KinematicsHistory", "paired_time"]


def paired_time(now: float, emg_covers: float, kinematics_at: float) -> float:
    """The instant an estimate at tick time ``now`` is made for (all on one clock).

    ``emg_covers``: the latest instant the EMG received so far gives exactly (the newest
    sample's stamp plus the carry's lateness; -inf when the model takes no EMG);
    ``kinematics_at``: the newest telemetry sample's time (+inf when the model takes no
    kinematics, or none has arrived). However far behind an input is, it is waited for.
    """
    return min(now, emg_covers, kinematics_at)


class DeviceClock:
    """Maps the firmware's clock onto the host's, from the telemetry frames' receipt times.

    A frame sent at device time f arrives at host time h = f + offset + transit, transit >= 0;
    the smallest h - f seen is the best estimate of the offset (the frame that waited least).
    The estimate may rise by ``drift`` seconds per second since the last frame, so that it
    follows a device clock that runs slow (tens of ppm on a crystal) instead of holding a
    minimum that has gone stale; between frames that wait least it may so overestimate the
    offset by up to ``drift`` times the time between them (20 us per second at 2e-5). A device time that goes backwards (the firmware restarted,
    or its 32-bit microsecond counter wrapped) starts a new estimate.
    """

    def __init__(self, drift: float = 2e-5) -> None:
        self.drift = float(drift)
        self.reset()

    def reset(self) -> None:
        self.offset = math.nan
        self._last_fw = -math.inf
        self._last_host = math.nan

    def to_host(self, fw_time_s: float, host_time: float) -> float:
        """The host time of device time ``fw_time_s``, learning from a frame received at
        ``host_time``. The same frame given twice teaches nothing new."""
        if fw_time_s < self._last_fw:
            self.reset()
        if fw_time_s != self._last_fw or math.isnan(self.offset):
            seen = host_time - fw_time_s
            if math.isnan(self.offset):
                self.offset = seen
            else:
                allowed = self.offset + self.drift * max(0.0, host_time - self._last_host)
                self.offset = min(allowed, seen)
            self._last_fw = fw_time_s
            self._last_host = host_time
        return fw_time_s + self.offset


class KinematicsHistory:
    """The newest telemetry samples (time, angles, velocities), read at any instant.

    ``at(t)`` is the linear interpolation between the samples around ``t``, held at the oldest
    and the newest sample (nothing is extrapolated). Preallocated; ``at`` writes into the
    arrays it is given.
    """

    def __init__(self, n_joints: int, history: int = 32) -> None:
        self.history = int(history)
        self._t = np.full(self.history, -math.inf)
        self._x = np.zeros((self.history, 2 * int(n_joints)))
        self._nj = int(n_joints)
        self._n = 0
        self._i = 0  # the next row to write (a ring; rows kept in time order by index)

    def reset(self) -> None:
        self._n = 0
        self._i = 0
        self._t[:] = -math.inf

    @property
    def newest(self) -> float:
        """The newest sample's time (+inf before any: no sample holds anything back)."""
        if self._n == 0:
            return math.inf
        return float(self._t[(self._i - 1) % self.history])

    def push(self, t: float, angles: np.ndarray, velocities: np.ndarray) -> None:
        """A telemetry sample measured at ``t``; one not newer than the newest is ignored
        (the control loop reads the latest frame every tick, often the same one twice)."""
        if self._n and t <= self.newest:
            return
        i = self._i
        self._t[i] = t
        self._x[i, : self._nj] = angles
        self._x[i, self._nj :] = velocities
        self._i = (i + 1) % self.history
        self._n = min(self._n + 1, self.history)

    def at(self, t: float, angles: np.ndarray, velocities: np.ndarray) -> None:
        """Angles and velocities at ``t`` into ``angles`` and ``velocities`` (unchanged before
        any sample)."""
        n, h, nj = self._n, self.history, self._nj
        if n == 0:
            return
        newest = (self._i - 1) % h
        oldest = (self._i - n) % h
        if t >= self._t[newest]:
            row = self._x[newest]
        elif t <= self._t[oldest]:
            row = self._x[oldest]
        else:
            # walk back from the newest: the instant asked for is almost always within the
            # last two or three samples
            j = newest
            while self._t[(j - 1) % h] > t:
                j = (j - 1) % h
            i0 = (j - 1) % h
            t0, t1 = self._t[i0], self._t[j]
            w = (t - t0) / (t1 - t0)
            x0, x1 = self._x[i0], self._x[j]
            for c in range(nj):
                angles[c] = x0[c] + w * (x1[c] - x0[c])
                velocities[c] = x0[nj + c] + w * (x1[nj + c] - x0[nj + c])
            return
        angles[:] = row[:nj]
        velocities[:] = row[nj:]
