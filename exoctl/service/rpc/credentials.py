"""Who is on the other end of a Unix socket (SO_PEERCRED plus the user database), and
whether they may use it."""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import struct
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PeerCredentials:
    pid: int
    uid: int
    gid: int
    user: str | None
    groups: tuple[str, ...]


NAMES_TTL_S = 10.0
"""How long a uid's user and group names are reused: a flood of connections costs one user
database lookup per uid, and a change of group membership takes effect within this."""


def peer_credentials(
    sock: socket.socket, names: dict[tuple[int, int], tuple[float, Any]] | None = None
) -> PeerCredentials:
    """Who is connected: SO_PEERCRED (pid, uid, gid at connect time), plus the user's name
    and group names from the user database (supplementary groups via getgrouplist). With a
    ``names`` dict, the lookups are remembered per (uid, gid) for ``NAMES_TTL_S``."""
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    now = time.monotonic()
    hit = names.get((uid, gid)) if names is not None else None
    if hit is not None and now - hit[0] < NAMES_TTL_S:
        user, groups = hit[1]
        return PeerCredentials(pid, uid, gid, user, groups)
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    gids = {gid}
    if user is not None:
        with contextlib.suppress(OSError):
            gids.update(os.getgrouplist(user, gid))
    group_names = []
    for g in sorted(gids):
        try:
            group_names.append(grp.getgrgid(g).gr_name)
        except KeyError:
            continue
    if names is not None:
        names[(uid, gid)] = (now, (user, tuple(group_names)))
    return PeerCredentials(pid, uid, gid, user, tuple(group_names))


def check_allowed(
    cred: PeerCredentials, allowed_users: Iterable[str], allowed_groups: Iterable[str]
) -> tuple[bool, str]:
    """(allowed, reason). A peer is allowed if its user or any of its groups is listed."""
    users = set(allowed_users)
    groups = set(allowed_groups)
    if cred.user is not None and cred.user in users:
        return True, f"user {cred.user} is allowed"
    hit = sorted(groups.intersection(cred.groups))
    if hit:
        return True, f"group {hit[0]} is allowed"
    who = cred.user if cred.user is not None else f"uid {cred.uid}"
    return False, (
        f"{who} (groups: {', '.join(cred.groups) or 'none'}) may not use this socket; "
        f"allowed users: {', '.join(sorted(users)) or 'none'}; "
        f"allowed groups: {', '.join(sorted(groups)) or 'none'}"
    )
