"""JSON-RPC 2.0 over Unix domain sockets: the daemon's local control API.

Why a Unix socket: the kernel tells us who is on the other end (SO_PEERCRED), file modes and
the group add a second fence, and nothing listens on the network next to a patient.

Two sockets, side by side (same mode, group and allowed peers):

* the **control socket** (``service.socket_path``): every method in an explicit table
  (``methods_from`` reads a handler's ``RPC_METHODS``; nothing is looked up by name on
  arbitrary objects). One JSON document per line (UTF-8, ``\\n``-terminated) each way.
* the **e-stop socket** (``estop_socket_path``: ``control.sock`` -> ``control.estop.sock``):
  *connecting is pressing the e-stop*. The daemon reads nothing from it, so no client, slow
  or silent, can hold it up: its one thread accepts every connection waiting, checks each
  peer, calls the handler's ``estop`` once for all of them, and answers each with one line
  (``{"jsonrpc":"2.0","id":null,"result":...}``) before closing it. Nothing else shares its
  thread, its listen queue or its slots.

Bounds on the control socket (``Limits``; each is answered with a JSON-RPC error, the
connection is closed only when the line itself cannot be trusted: too long or too slow):

* a request line of at most ``max_request_bytes``, completed within ``request_timeout_s`` of
  its first byte (a client trickling bytes loses its connection, nobody else waits for it);
* at most ``max_batch`` calls per batch, ``max_depth`` levels of nesting, ``max_items``
  values in all, ``max_number_digits`` digits in a number; NaN, Infinity and floats that
  overflow are refused. These are checked on the raw bytes before the parser runs, and a
  batch is refused at its first call too many, so a hostile line costs about as much as a
  well-formed one of the same size;
* ``max_connections`` connections. When all are taken, a new one evicts the connection idle
  longest (connected, no request in progress); if every one is mid-request the newcomer gets
  ``BUSY``. Evicted and idle-timed-out connections get ``CONNECTION_CLOSED``. Both mean
  "nothing was done, connect again", which ``exoctl.service.client`` does by itself;
* replies must be read within ``send_timeout_s``;
* requests are taken at most ``requests_per_s`` a second (a burst of ``request_burst``; a
  line costs one plus one per 4 KiB), one at a time, each just after a control tick (the
  daemon's ``gate``), and connections at most ``connections_per_s``; the request threads'
  own CPU time is charged to a budget of ``request_cpu_share`` of a core, and a request
  starts only when it is out of debt. Beyond that a client waits (in the listen queue, or for
  its turn, taken in arrival order), it is not refused; the e-stop never waits.

The acceptor never reads from, writes blocking to, or waits for a client.

Processes: in the daemon the control socket is served by its own process (``relay``: the
*front*, ``RpcServer(sockets="control")``), which relays each decoded call to the daemon over
a socket pair; the daemon serves the e-stop socket itself (``sockets="estop"``) and runs the
calls through its ``Dispatcher``. So no client's Python shares an interpreter with the control
loop. ``RpcServer`` with both sockets in one process remains for tests and tools.

Threads and the control loop: one thread per connection. Handler calls are serialised by a
lock, so the object behind them sees one supervisor request at a time, except methods named
``concurrent`` (the e-stop always is: it must never wait behind a session's ramp-out).
Methods named in ``cached`` (``status``) are built at most once per their time to live and
their encoded reply reused by every caller meanwhile; any other call invalidates them. So a
flood of ``status`` costs one build per period, not one per call. None of this runs on the
control thread.

Modules: ``errors`` (the codes and the exceptions handlers raise), ``limits``, ``decode``
(a line to a JSON value within the limits), ``credentials`` (who is connected), ``dispatch``
(method table, dispatcher, reply cache, the replies' encoding), ``pacing`` (token bucket, CPU
budget, gated work section), ``sockets`` (binding, paths), ``server`` (both sockets' threads,
the e-stop socket's protocol with them), ``relay`` (the daemon's side of the front process)
and ``front`` (the front process). Their public names are importable from here, loaded on
first use (``__getattr__``): the CLI's ``exoctl estop`` needs the constants and the socket
path rule, not the server and its logging."""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from exoctl.service.rpc.credentials import (
        NAMES_TTL_S,
        PeerCredentials,
        check_allowed,
        peer_credentials,
    )
    from exoctl.service.rpc.decode import decode_request
    from exoctl.service.rpc.dispatch import Dispatcher, encode_error, methods_from
    from exoctl.service.rpc.errors import (
        BUSY,
        CONNECTION_CLOSED,
        INTERNAL_ERROR,
        INVALID_PARAMS,
        INVALID_REQUEST,
        METHOD_NOT_FOUND,
        PARSE_ERROR,
        PERMISSION_DENIED,
        REFUSED,
        RETRYABLE,
        InvalidParams,
        Refused,
        RpcError,
    )
    from exoctl.service.rpc.limits import DEFAULT_MAX_REQUEST_BYTES, Limits
    from exoctl.service.rpc.server import GATED_LINE_BYTES, RpcServer
    from exoctl.service.rpc.sockets import ESTOP_METHOD, estop_socket_path, socket_in_use

_MODULES = ("errors", "limits", "sockets", "credentials", "decode", "dispatch", "server")
"""Where the public names (``__all__``) live, lightest first: a name is looked for in order,
so a constant or the socket path rule never loads the server and its logging."""


def __getattr__(name: str) -> Any:
    """A public name, imported from its module when first asked for (PEP 562)."""
    if name in __all__:
        for module in _MODULES:
            mod = importlib.import_module(f"{__name__}.{module}")
            if name in vars(mod):
                globals()[name] = value = vars(mod)[name]
                return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BUSY",
    "CONNECTION_CLOSED",
    "DEFAULT_MAX_REQUEST_BYTES",
    "ESTOP_METHOD",
    "GATED_LINE_BYTES",
    "INTERNAL_ERROR",
    "INVALID_PARAMS",
    "INVALID_REQUEST",
    "METHOD_NOT_FOUND",
    "NAMES_TTL_S",
    "PARSE_ERROR",
    "PERMISSION_DENIED",
    "REFUSED",
    "RETRYABLE",
    "Dispatcher",
    "InvalidParams",
    "Limits",
    "PeerCredentials",
    "Refused",
    "RpcError",
    "RpcServer",
    "check_allowed",
    "decode_request",
    "encode_error",
    "estop_socket_path",
    "methods_from",
    "peer_credentials",
    "socket_in_use",
]
