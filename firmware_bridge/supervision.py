"""The link's supervision: handshake, acknowledged requests, heartbeats, reconnect hellos.

A mixin of :class:`~firmware_bridge.link.HostLink`, kept apart from its I/O (port, reader,
send path): these are the exchanges that keep a session with the device alive, on the
caller's thread (handshake, enable/disable/clear) or on the *supervisor* thread (a heartbeat
whenever no frame went out for a heartbeat period; the handshake repeated after a reconnect,
never the enable). They reach the port only through the I/O half's ``_send``/``_write``.
"""

from __future__ import annotations

import secrets
import threading
import time
from typing import TYPE_CHECKING, Any

from firmware_bridge import protocol as P
from firmware_bridge.errors import LinkError

if TYPE_CHECKING:
    from firmware_bridge.link_api import DeviceInfo


class LinkSupervision:
    """Handshake, requests and the supervisor loop of a :class:`HostLink` (its state lives
    there; see its ``__init__``)."""

    # State shared with the I/O half (made in HostLink.__init__).
    port: str
    heartbeat_period_s: float
    last_error: str | None
    _running: bool
    _ser: Any
    _wake: threading.Event
    _decoder: P.StreamDecoder
    _device: DeviceInfo | None
    _handshaken: bool
    _enabled: bool
    _protocol_fault: str | None
    _hello_nonce: int | None
    _hello_event: threading.Event
    _last_hello_tx: float
    _req_id: int
    _acks: dict[int, P.Ack]
    _ack_cv: threading.Condition
    _last_tx: float
    _heartbeats_sent: int
    _seq: int

    if TYPE_CHECKING:  # provided by the I/O half

        @property
        def healthy(self) -> bool: ...

        def _send(self, msg: P.Message) -> bool: ...

    # ------------------------------------------------------------------ handshake
    def handshake(self, timeout_s: float = 1.0) -> DeviceInfo:
        """Exchange Hello / DeviceInfo; raises LinkError on timeout or any mismatch."""
        if not self._running:
            raise LinkError("handshake before open()")
        self._hello_event.clear()
        self._decoder.last_bad_version = None
        deadline = time.monotonic() + timeout_s
        self._hello_nonce = secrets.randbits(32)
        while True:
            self._send_hello()
            # repeat well within the device's command timeout: a device that got the Hello but
            # whose DeviceInfo was lost must not see host silence
            wait = min(self.heartbeat_period_s, max(0.0, deadline - time.monotonic()))
            if self._hello_event.wait(wait):
                break
            if self._decoder.last_bad_version is not None:
                raise LinkError(
                    f"protocol version mismatch: host speaks {P.PROTOCOL_VERSION}, "
                    f"device {self.port} speaks {self._decoder.last_bad_version}"
                )
            if time.monotonic() >= deadline:
                raise LinkError(
                    f"handshake timed out after {timeout_s} s on {self.port}: no DeviceInfo "
                    f"(frames good {self._decoder.good}, errors {self._decoder.errors})"
                )
        if self._protocol_fault:
            raise LinkError(self._protocol_fault)
        assert self._device is not None
        return self._device

    def _send_hello(self) -> None:
        if self._hello_nonce is None:
            self._hello_nonce = secrets.randbits(32)
        self._last_hello_tx = time.monotonic()
        self._send(P.Hello(self._hello_nonce))

    # ------------------------------------------------------------------ acknowledged requests
    def _next_req_id(self) -> int:
        self._req_id = (self._req_id + 1) & 0xFFFF
        return self._req_id

    def _request(self, cls: type, timeout_s: float) -> P.Ack | None:
        """Send an acknowledged request, repeating it (new request id) every 50 ms until an
        Ack arrives or the timeout expires; the three requests are idempotent."""
        deadline = time.monotonic() + timeout_s
        while True:
            rid = self._next_req_id()
            with self._ack_cv:
                self._acks.pop(rid, None)
            self._send(cls(rid))
            attempt_end = min(deadline, time.monotonic() + 0.05)
            with self._ack_cv:
                while rid not in self._acks:
                    left = attempt_end - time.monotonic()
                    if left <= 0:
                        break
                    self._ack_cv.wait(left)
                if rid in self._acks:
                    return self._acks.pop(rid)
            if time.monotonic() >= deadline:
                return None

    def enable(self, timeout_s: float = 0.5, clear_faults: bool = True) -> bool:
        """Ask the device to accept torque; True once it acknowledged.

        This is the act of a person (operator button, CLI, HIL runner). With ``clear_faults``
        it first clears latched faults whose cause is gone (e.g. a host timeout after a replug).
        False (reason in ``last_error``) when refused, timed out, or the link is not healthy.
        """
        deadline = time.monotonic() + timeout_s
        while not self.healthy:  # e.g. right after the handshake, before the first telemetry
            if time.monotonic() >= deadline:
                self.last_error = "enable refused by host: link not healthy"
                return False
            time.sleep(0.001)
        if clear_faults:
            ack = self._request(P.ClearFaults, max(0.0, deadline - time.monotonic()))
            if ack is None:
                self.last_error = "enable: no acknowledgement of ClearFaults"
                return False
        ack = self._request(P.Enable, max(0.0, deadline - time.monotonic()))
        if ack is None:
            self.last_error = f"enable: no acknowledgement within {timeout_s} s"
            return False
        if ack.result != P.ACK_OK:
            names = [n for b, n in P.FAULT_NAMES.items() if ack.fault_bits & b]
            self.last_error = f"enable refused by device: result {ack.result}, faults {names}"
            self._enabled = False
            return False
        self._enabled = True
        return True

    def disable(self, timeout_s: float = 0.5) -> bool:
        """Remove assistance; the host-side enable drops at once, before any acknowledgement."""
        self._enabled = False
        if self._ser is None:
            return False
        ack = self._request(P.Disable, timeout_s)
        return ack is not None and ack.result == P.ACK_OK

    def clear_faults(self, timeout_s: float = 0.5) -> bool:
        ack = self._request(P.ClearFaults, timeout_s)
        return ack is not None and ack.result == P.ACK_OK

    # ------------------------------------------------------------------ hot path
    # ------------------------------------------------------------------ supervisor thread
    def _supervise_loop(self) -> None:
        period = self.heartbeat_period_s
        wait = period / 4
        while self._running:
            self._wake.wait(wait)
            wait = period / 4
            if not self._running:
                break
            now = time.monotonic()
            if self._ser is None:
                continue
            if not self._handshaken:
                if self._device is not None and now - self._last_hello_tx >= period:
                    self._send_hello()  # reconnect: repeat the handshake, never the enable
                continue
            if now - self._last_tx >= period:
                self._heartbeats_sent += 1
                self._send(P.Heartbeat(int(now * 1e6) & 0xFFFFFFFF, self._seq))
            # Asleep until a heartbeat can next be due (a frame sent meanwhile only puts it
            # off): one wake-up per period while nothing else is sent, not four.
            wait = max(wait, self._last_tx + period - time.monotonic())

    # ------------------------------------------------------------------ observation
