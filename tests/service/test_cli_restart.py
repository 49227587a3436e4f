"""``status`` while the control socket's process restarts: the daemon (its e-stop socket) is
alive, the control socket is not there. The CLI waits for it within its retry time, then says
the socket is restarting; it never says "the daemon is not running" then.

Real sockets: an ``RpcServer`` serving only the e-stop socket stands for the daemon, one
serving only the control socket for its (restarted) front."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from exoctl.config.schema import load_config
from exoctl.service import client as C
from exoctl.service import commands as K
from exoctl.service import rpc
from exoctl.service.rpc.sockets import estop_listening


@pytest.fixture
def sock(tmp_path: Path, write_config) -> tuple[Path, Path]:
    cfg = write_config(tmp_path)
    return cfg, load_config(cfg).service.socket_path


def test_status_says_restarting_not_not_running(sock, run_cli, capsys, estop_stand_in) -> None:
    cfg, path = sock
    h = estop_stand_in
    daemon = rpc.RpcServer(path, rpc.methods_from(h), allowed_users=["root"], sockets="estop")
    daemon.start()
    try:
        assert estop_listening(path)
        assert run_cli(["--config", str(cfg), "status"]) == K.EXIT_ERROR
        err = capsys.readouterr().err
        assert "restarting" in err and "not running" not in err, err
        assert h.pressed == 0  # finding the daemon alive did not press its e-stop
        assert run_cli(["--config", str(cfg), "estop"]) == 0  # and the e-stop works
        assert h.pressed == 1
    finally:
        daemon.close()
    assert not estop_listening(path)  # gone (or a stale file): not running again
    assert run_cli(["--config", str(cfg), "status"]) == K.EXIT_NOT_RUNNING


def test_status_waits_for_a_control_socket_that_comes_back(
    sock, run_cli, capsys, estop_stand_in
) -> None:
    cfg, path = sock
    h = estop_stand_in
    daemon = rpc.RpcServer(path, rpc.methods_from(h), allowed_users=["root"], sockets="estop")
    daemon.start()
    fronts: list[rpc.RpcServer] = []

    def restart_front() -> None:
        time.sleep(1.0)  # what the daemon's relay takes to restart its front
        fronts.append(
            rpc.RpcServer(
                path, rpc.methods_from(h), allowed_users=["root"], sockets="control"
            ).start()
        )

    t = threading.Thread(target=restart_front)
    t.start()
    try:
        assert run_cli(["--config", str(cfg), "status", "--json"]) == 0, capsys.readouterr()
    finally:
        t.join()
        for f in fronts:
            f.close()
        daemon.close()


def test_a_stale_estop_socket_file_is_not_a_live_daemon(sock) -> None:
    _, path = sock
    import socket

    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(rpc.estop_socket_path(path)))  # a file left by a killed daemon, nobody listens
    s.close()
    assert not estop_listening(path)
    with pytest.raises(C.DaemonNotRunning):
        C.call(path, "status", retry_s=0.5)
