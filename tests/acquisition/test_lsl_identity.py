"""The EMG inlet takes one stream, from its host, and never another one in its place.

LSL has no authentication: whoever publishes the amplifier's source id is a candidate. These
tests publish a second stream with the same source id over real LSL on loopback, in this
process or in a second one. "Another host" is a second process in its own UTS namespace
(``unshare --uts``, as root) with its own host name: it shares this machine's network, so
its stream is on loopback like ours, but liblsl publishes it under that name, exactly as a
stream from another computer arrives. Those tests are skipped where ``unshare`` cannot make
a UTS namespace.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import textwrap
import time
import uuid
from collections.abc import Callable, Iterator

import numpy as np
import pylsl
import pytest

from exoctl.acquisition.ringbuffer import RingBuffer
from exoctl.acquisition.sources import (
    AcquisitionError,
    LslAcquisition,
    make_acquisition,
    resolve_lsl_stream,
)
from exoctl.config.schema import EmgConfig, load_config

CFG = load_config()
N_CH = len(CFG.emg.muscles)
FS = CFG.emg.sampling_rate_hz
IMPOSTOR_HOST = "exoctl-impostor"

# A second process publishing EMG with a given source id under a given host name; it pushes
# samples until its stdin closes, so if it were taken, data would flow.
_PUBLISHER = textwrap.dedent(
    """
    import socket, sys, threading, time
    socket.sethostname(sys.argv[2])
    import numpy as np, pylsl
    import exoctl  # exoctl's liblsl settings, as a bench's simulator has them
    info = pylsl.StreamInfo("exoctl-sim-emg", "EMG", int(sys.argv[3]), float(sys.argv[4]),
                            pylsl.cf_float32, sys.argv[1])
    outlet = pylsl.StreamOutlet(info)
    print(socket.gethostname(), flush=True)
    done = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), done.set()), daemon=True).start()
    chunk = np.ones((4, int(sys.argv[3])), dtype=np.float32)
    while not done.wait(0.002):
        outlet.push_chunk(chunk)
    """
)


def _uts_available() -> bool:
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(["unshare", "--uts", "true"], capture_output=True, timeout=10)
    return probe.returncode == 0


needs_uts = pytest.mark.skipif(
    not _uts_available(), reason="needs `unshare --uts` (root) to publish under another host name"
)


@pytest.fixture
def impostor() -> Iterator[Callable[[str], None]]:
    """Start a publisher of a source id under IMPOSTOR_HOST (a second process)."""
    procs: list[subprocess.Popen[str]] = []

    def start(source_id: str) -> None:
        p = subprocess.Popen(
            ["unshare", "--uts", sys.executable, "-c", _PUBLISHER, source_id, IMPOSTOR_HOST,
             str(N_CH), str(FS)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(p)
        assert p.stdout is not None
        assert p.stdout.readline().strip() == IMPOSTOR_HOST

    yield start
    for p in procs:
        assert p.stdin is not None
        p.stdin.close()
        try:
            p.wait(10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def _emg_cfg(source_id: str, timeout: float = 5.0) -> EmgConfig:
    lsl = CFG.emg.lsl.model_copy(update={"source_id": source_id, "resolve_timeout_s": timeout})
    return CFG.emg.model_copy(update={"lsl": lsl})


def _outlet(source_id: str) -> pylsl.StreamOutlet:
    info = pylsl.StreamInfo("exoctl-sim-emg", "EMG", N_CH, FS, pylsl.cf_float32, source_id)
    return pylsl.StreamOutlet(info, chunk_size=4)


def _push(outlet: pylsl.StreamOutlet, seconds: float) -> None:
    chunk = np.ones((4, N_CH), dtype=np.float32)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        outlet.push_chunk(chunk)
        time.sleep(0.002)


def _wait(pred: Callable[[], bool], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.01)
    return pred()


def _sid() -> str:
    return f"test-{uuid.uuid4().hex}"


# ------------------------------------------------------------------ at start
def test_two_streams_with_the_source_id_are_refused_naming_both() -> None:
    sid = _sid()
    first, second = _outlet(sid), _outlet(sid)
    uids = {first.get_info().uid(), second.get_info().uid()}
    with pytest.raises(AcquisitionError) as e:
        resolve_lsl_stream(_emg_cfg(sid))
    msg = str(e.value)
    assert f"2 LSL streams match source_id='{sid}'" in msg and "takes none of them" in msg
    assert all(uid in msg for uid in uids), msg
    assert msg.count(f"host {socket.gethostname()!r}") == 2, msg


def test_the_stream_is_resolved_on_this_host_by_default() -> None:
    sid = _sid()
    outlet = _outlet(sid)
    info = resolve_lsl_stream(_emg_cfg(sid))
    assert info.uid() == outlet.get_info().uid() and info.hostname() == socket.gethostname()


@needs_uts
def test_a_stream_from_another_host_is_not_taken_and_is_named(impostor) -> None:
    sid = _sid()
    impostor(sid)
    with pytest.raises(AcquisitionError) as e:
        resolve_lsl_stream(_emg_cfg(sid, timeout=1.0))
    msg = str(e.value)
    assert f"no LSL stream matching source_id='{sid}' and hostname='{socket.gethostname()}'" in msg
    assert f"published by host {IMPOSTOR_HOST!r}" in msg and "refused" in msg


@needs_uts
def test_ours_beside_one_from_another_host_are_both_refused(impostor) -> None:
    sid = _sid()
    _ours = _outlet(sid)
    impostor(sid)
    with pytest.raises(AcquisitionError) as e:
        resolve_lsl_stream(_emg_cfg(sid))
    msg = str(e.value)
    assert f"2 LSL streams match source_id='{sid}'" in msg
    assert f"host {IMPOSTOR_HOST!r}" in msg and f"host {socket.gethostname()!r}" in msg


# ------------------------------------------------------------------ after a dropout
def _running(sid: str) -> tuple[LslAcquisition, RingBuffer, pylsl.StreamOutlet]:
    """An acquisition reading our outlet, samples flowing."""
    outlet = _outlet(sid)
    ring = RingBuffer(int(FS * 2), N_CH)
    acq = make_acquisition(_emg_cfg(sid), ring)
    assert isinstance(acq, LslAcquisition)
    acq.start()
    assert _wait(lambda: outlet.have_consumers())
    _push(outlet, 0.2)
    assert _wait(lambda: ring.written > 0)
    return acq, ring, outlet


def _refused_and_nothing_read(acq: LslAcquisition, ring: RingBuffer, push: Callable) -> str:
    """Once the acquisition refuses what came back, none of its samples reach the ring."""
    assert _wait(lambda: ring.source_fault is not None, timeout=15.0), acq.stats()
    written = ring.written
    push()
    assert ring.written == written
    assert acq.error is not None and acq.error.startswith("EMG stream refused")
    assert ring.source_fault is not None
    return ring.source_fault


def test_a_new_stream_with_the_source_id_after_a_dropout_is_refused() -> None:
    """The amplifier's outlet goes away and an outlet with its source id appears on the same
    host: a new uid. liblsl's own recovery would connect to it without a word."""
    sid = _sid()
    acq, ring, outlet = _running(sid)
    try:
        del outlet  # the stream is lost (its outlet closes the connection)
        time.sleep(0.5)
        replacement = _outlet(sid)
        why = _refused_and_nothing_read(acq, ring, lambda: _push(replacement, 1.0))
        assert f"source_id='{sid}' came back as another stream" in why
        assert replacement.get_info().uid() in why
        assert not replacement.have_consumers()
    finally:
        acq.stop()


def test_two_streams_after_a_dropout_are_refused() -> None:
    sid = _sid()
    acq, ring, outlet = _running(sid)
    try:
        del outlet
        time.sleep(0.5)
        a, b = _outlet(sid), _outlet(sid)
        why = _refused_and_nothing_read(acq, ring, lambda: (_push(a, 0.5), _push(b, 0.5)))
        # Whichever answers first is refused at once (a new uid), or both together.
        assert (
            "came back as another stream" in why or f"2 LSL streams match source_id='{sid}'" in why
        )
    finally:
        acq.stop()


def test_our_stream_is_taken_back_alone_and_never_beside_another() -> None:
    """What the acquisition decides on the streams that answer after a dropout, on real
    resolved stream infos: its own stream alone is taken back; beside a second one, not."""
    sid = _sid()
    ours = _outlet(sid)
    info = resolve_lsl_stream(_emg_cfg(sid))
    acq = LslAcquisition(info, RingBuffer(16, N_CH))
    assert acq.judge(pylsl.resolve_bypred(f"source_id='{sid}'", 1, 5.0)) is None
    other = _outlet(sid)
    both = pylsl.resolve_bypred(f"source_id='{sid}'", 2, 5.0)
    assert len(both) == 2
    why = acq.judge(both)
    assert why is not None and f"2 LSL streams match source_id='{sid}'" in why
    assert ours.get_info().uid() in why and other.get_info().uid() in why


@needs_uts
def test_a_stream_from_another_host_after_a_dropout_is_refused(impostor) -> None:
    sid = _sid()
    acq, ring, outlet = _running(sid)
    try:
        del outlet
        time.sleep(0.5)
        impostor(sid)  # it pushes samples all along
        why = _refused_and_nothing_read(acq, ring, lambda: time.sleep(1.0))
        assert f"came back from host {IMPOSTOR_HOST!r}" in why
    finally:
        acq.stop()
