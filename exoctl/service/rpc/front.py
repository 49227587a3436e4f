"""``python -m exoctl.service.rpc.front SPEC``: the control socket's own process, started by
the daemon (``exoctl.service.rpc.relay.Front``); SPEC is its JSON description. Not a command
for people: it says ``ready`` on stdout once it listens, or ``error: ...`` and exits 1."""

from __future__ import annotations

import json
import sys

from exoctl.service.rpc.relay import run_front


def main(argv: list[str] | None = None) -> int:
    from exoctl.service.logs import configure_logging

    args = sys.argv[1:] if argv is None else argv
    configure_logging(sys.stderr)  # stdout carries the one ready line
    return run_front(json.loads(args[0]), sys.stdout)


if __name__ == "__main__":
    raise SystemExit(main())
