"""The e-stop socket's protocol: *connecting is pressing*. Nothing is ever read from a client,
so no client, slow or silent, can stall the thread that answers it."""

from __future__ import annotations

import socket
from collections.abc import Callable

from exoctl.service.rpc.sockets import send_nowait

MAX_ROUND = 1024
"""At most this many waiting connections are answered by one press."""


def drain_waiting(listener: socket.socket, first: socket.socket) -> list[socket.socket]:
    """``first`` and every connection already waiting in the listen queue (non-blocking).

    ``listener`` is left with the 0.2 s timeout the accept loops poll with."""
    waiting = [first]
    listener.setblocking(False)
    try:
        while len(waiting) < MAX_ROUND:
            waiting.append(listener.accept()[0])
    except OSError:  # BlockingIOError: the queue is empty
        pass
    finally:
        listener.settimeout(0.2)
    return waiting


def answer_presses(
    waiting: list[socket.socket],
    refusal: Callable[[socket.socket], bytes | None],
    press: Callable[[], bytes],
) -> None:
    """Press the e-stop as soon as one allowed peer is found among ``waiting``, once for all
    of them (each connected before that call started); each gets the answer, refused peers
    (``refusal`` returns their reply) a refusal; then each is closed."""
    resp: bytes | None = None
    for s in waiting:
        refused = refusal(s)
        if refused is not None:
            send_nowait(s, refused)
        else:
            if resp is None:
                resp = press()
            send_nowait(s, resp)
        s.close()
