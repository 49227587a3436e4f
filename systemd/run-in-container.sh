#!/usr/bin/env bash
# Runs systemd/exoctl.service under a real systemd, for a machine whose PID 1 is not systemd
# (a container, a build machine): this machine's own systemd boots as PID 1 of a throw-away
# container (systemd-nspawn --volatile=yes: the host's /usr, everything else a tmpfs), with the
# HIL simulator as a second unit beside the daemon. It then drives a recorded session through
# the control socket, checks the watchdog (a stopped daemon is killed and restarted) and a
# clean stop, an adapter that comes back on another device number, the IP allow list and the
# device policy in force, and prints what systemd applied. docs/deploy.md, "The unit's
# sandbox", says what this shows. The container runs on cgroup v2 with bpf() allowed, which the
# IP filter and the device policy need.
#
# Needs root, systemd-nspawn (Debian: systemd-container) and a python3.11 outside /home and
# /root (ProtectHome= hides those from the daemon), by default /usr/bin/python3.11, with the
# packages exoctl needs in SITE_PACKAGES (default: those of the python3 on PATH, e.g. a venv).
#
#   sudo systemd/run-in-container.sh [SITE_PACKAGES]
set -euo pipefail

checkout=$(cd "$(dirname "$0")/.." && pwd)
python=${EXOCTL_CONTAINER_PYTHON:-/usr/bin/python3.11}
site=${1:-$(python3 -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')}
machine=exoctl-unit-$$
source_id=container-$$

fail() { echo "run-in-container: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || fail "needs root (systemd-nspawn)"
command -v systemd-nspawn >/dev/null || fail "systemd-nspawn is not installed (Debian: systemd-container)"
[ -x "$python" ] || fail "$python not found (EXOCTL_CONTAINER_PYTHON names another)"
[ -d "$site/numpy" ] || fail "$site has no numpy: name the site-packages of exoctl's environment"
for p in "$checkout" "$site"; do
  case $p in /home/* | /root/*) fail "$p is under /home or /root, which the unit hides" ;; esac
done

work=$(mktemp -d /tmp/exoctl-container.XXXXXX)
nspawn_pid=
cleanup() {
  if [ -n "$nspawn_pid" ] && kill -0 "$nspawn_pid" 2>/dev/null; then
    kill -TERM "$nspawn_pid"  # the container halts
    for _ in $(seq 60); do kill -0 "$nspawn_pid" 2>/dev/null || break; sleep 0.5; done
    kill -TERM "$nspawn_pid" 2>/dev/null || true  # a second TERM ends it at once
  fi
  rm -rf "$work"
}
trap cleanup EXIT

env_line="Environment=PYTHONPATH=$checkout:$site"
cat >"$work/exoctl-test.target" <<EOF
[Unit]
Description=exoctl unit test: basic system only
Requires=basic.target
After=basic.target
EOF
printf 'g exoctl - -\nu exoctl -:exoctl "exoctl daemon" /var/lib/exoctl /usr/sbin/nologin\n' \
  >"$work/sysusers.conf"
cat >"$work/bench.conf" <<EOF
# What this test needs that the exoskeleton PC does not.
[Service]
ExecStart=
ExecStart=$python -m exoctl.cli --config /etc/exoctl/exoctl.yaml daemon
$env_line
# Hard limits cannot be raised without CAP_SYS_RESOURCE, which containers often lack: keep
# the machine's (the capabilities still grant SCHED_FIFO and mlockall).
LimitRTPRIO=$(ulimit -Hr | sed 's/unlimited/infinity/')
LimitMEMLOCK=$(ulimit -Hl | sed 's/unlimited/infinity/; s/^\([0-9]*\)$/\1K/')
IPAccounting=yes
EOF
cat >"$work/exoctl-sim.service" <<EOF
[Unit]
Description=exoctl HIL simulator
[Service]
User=exoctl
RuntimeDirectory=exoctl-sim
RuntimeDirectoryMode=0755
# its pty link must be outside /tmp, which the daemon does not share (PrivateTmp=)
Environment=TMPDIR=/run/exoctl-sim
$env_line
ExecStart=$python -m exoctl.cli --config /etc/exoctl/exoctl.yaml sim --port /run/exoctl-sim/exoskeleton --source-id $source_id --info-file /run/exoctl-sim/sim.json
Nice=5
EOF
PYTHONPATH="$checkout:$site" "$python" - "$work/exoctl.yaml" "$source_id" <<'EOF'
import sys
from pathlib import Path

import yaml

from exoctl.config.lookup import find_config
from exoctl.hil.bench import bench_config

out, source_id = Path(sys.argv[1]), sys.argv[2]
base = find_config(None).path
raw = bench_config(base, out.parent, Path("/run/exoctl-sim/exoskeleton"), source_id, True)
raw["simulator"]["realtime_priority"] = 0
# the exoskeleton PC's service section (docs/deploy.md, section 3), the loop at SCHED_FIFO 10
raw["service"] = {
    "data_dir": "/var/lib/exoctl", "socket_path": "/run/exoctl/control.sock",
    "socket_group": "exoctl", "allowed_users": ["root"], "allowed_groups": ["exoctl"],
    "realtime_priority": 10, "lock_memory": True,
}
out.write_text(yaml.safe_dump(raw, sort_keys=False))
EOF

etc=/etc/systemd/system
SYSTEMD_NSPAWN_UNIFIED_HIERARCHY=1 \
systemd-nspawn -D / --volatile=yes --register=no --keep-unit -M "$machine" -b --console=pipe \
  --capability=CAP_IPC_LOCK --system-call-filter=bpf --bind-ro="$checkout" --bind-ro="$site" \
  --bind-ro="$checkout/systemd/exoctl.service:$etc/exoctl.service" \
  --bind-ro="$work/bench.conf:$etc/exoctl.service.d/bench.conf" \
  --bind-ro="$work/exoctl-sim.service:$etc/exoctl-sim.service" \
  --bind-ro="$work/exoctl-test.target:$etc/exoctl-test.target" \
  --bind-ro="$work/sysusers.conf:/etc/sysusers.d/exoctl.conf" \
  --bind-ro="$work/exoctl.yaml:/etc/exoctl/exoctl.yaml" \
  -- systemd.unit=exoctl-test.target systemd.firstboot=off \
  </dev/null >"$work/boot.log" 2>&1 &
nspawn_pid=$!

leader=
for _ in $(seq 120); do
  leader=$(pgrep -P "$nspawn_pid" | head -1) && [ -n "$leader" ] && break
  sleep 0.5
done
[ -n "$leader" ] || fail "the container did not start: $(cat "$work/boot.log")"
ct() { nsenter -t "$leader" -a "$@"; }
journal() { ct journalctl -u exoctl --no-pager -o cat; }
state=
for _ in $(seq 240); do  # until the container's systemd answers and has finished booting
  state=$(ct systemctl is-system-running 2>/dev/null || true)
  case $state in running | degraded) break ;; esac
  sleep 0.5
done
case $state in running | degraded) ;; *) fail "the container did not boot (state: ${state:-none})" ;; esac
exoctl() { ct env "PYTHONPATH=$checkout:$site" "$python" -m exoctl.cli --config /etc/exoctl/exoctl.yaml "$@"; }

echo "== $(ct readlink /proc/1/exe) as PID 1 of container $machine; the simulator"
ct systemctl start exoctl-sim
for _ in $(seq 240); do ct test -f /run/exoctl-sim/sim.json && break; sleep 0.5; done
ct test -f /run/exoctl-sim/sim.json || fail "the simulator did not start"

echo "== exoctl.service: start (Type=notify: returns at READY=1)"
ct systemctl start exoctl || { journal | tail -20; fail "start failed"; }
main_pid=$(ct systemctl show exoctl -p MainPID --value)
ct grep -E '^(Seccomp|NoNewPrivs|CapEff):' "/proc/$main_pid/status"
journal | grep realtime_setup | cut -c1-120 || true

echo "== a recorded session through the control socket"
exoctl fault clear >/dev/null || true
for _ in 1 2 3; do exoctl session start --patient P01 --assist 0.3 && break; sleep 1; exoctl fault clear >/dev/null || true; done
sleep 5
exoctl assist set 0.4 || fail "assist set failed"
exoctl estop
exoctl fault clear
sleep 2
exoctl session stop || fail "session stop failed"
exoctl sessions list

echo "== the adapter comes back on another device number (the simulator restarted)"
before=$(ct readlink -f /run/exoctl-sim/exoskeleton)
ct systemctl stop exoctl-sim
ct rm -f /run/exoctl-sim/sim.json
# hold the freed pseudo-terminal so that the new one gets another number, as a replugged
# adapter may come back as ttyUSB1
ct systemd-run --unit=pty-holder --quiet "$python" -c 'import os, time; os.openpty(); os.openpty(); time.sleep(600)'
ct systemctl start exoctl-sim
for _ in $(seq 240); do ct test -f /run/exoctl-sim/sim.json && break; sleep 0.5; done
after=$(ct readlink -f /run/exoctl-sim/exoskeleton)
echo "adapter: $before -> $after"
[ "$before" != "$after" ] || fail "the simulator's terminal kept its number"
telemetry() {  # the link's telemetry frame count, from `exoctl status --json`
  exoctl status --json | "$python" -c '
import json, sys
def find(d):
    if isinstance(d, dict):
        if "telemetry_received" in d:
            return d["telemetry_received"]
        for v in d.values():
            if (n := find(v)) is not None:
                return n
    return None
print(find(json.load(sys.stdin)))'
}
t0=$(telemetry)
sleep 10
t1=$(telemetry)
echo "telemetry frames: $t0 -> $t1"
[ "$t1" -gt "$t0" ] || fail "no telemetry from the adapter after it came back"
ct systemctl stop pty-holder

echo "== IP: localhost only, and the daemon's LSL through it"
ct systemctl show exoctl -p IPAddressDeny -p IPAddressAllow -p IPIngressBytes
[ "$(ct systemctl show exoctl -p IPIngressBytes --value)" -gt 0 ] || fail "no IP traffic accounted"
probe='import socket; s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); s.sendto(b"x", ("127.0.0.1", 9))
try:
    s.sendto(b"x", ("192.0.2.1", 9)); print("sent elsewhere: the IP filter is not in force")
except PermissionError:
    print("refused elsewhere, sent to 127.0.0.1: the IP filter is in force")'
ct systemd-run --quiet --wait --pipe -p IPAddressDeny=any -p IPAddressAllow=localhost "$python" -c "$probe"

echo "== devices: DevicePolicy=closed in force"
ct systemd-run --quiet --wait --pipe -p DevicePolicy=closed "$python" -c 'import os
try:
    os.close(os.open("/dev/net/tun", os.O_RDWR)); print("opened /dev/net/tun: the device policy is not in force")
except PermissionError:
    print("/dev/net/tun refused: the device policy is in force")'

echo "== watchdog: the daemon stopped with SIGSTOP"
ct kill -STOP "$main_pid"
for _ in $(seq 40); do [ "$(journal | grep -c "Watchdog timeout")" != 0 ] && break; sleep 0.5; done
journal | grep -E "Watchdog timeout|Killing process $main_pid" || fail "no watchdog kill"
for _ in $(seq 120); do [ "$(ct systemctl show exoctl -p NRestarts --value)" -ge 1 ] && ct systemctl is-active -q exoctl && break; sleep 1; done
ct systemctl is-active exoctl >/dev/null || fail "not restarted after the watchdog"
echo "restarted ($(ct systemctl show exoctl -p NRestarts))"

echo "== stop"
ct systemctl stop exoctl
ct systemctl show exoctl -p Result -p ExecMainStatus
if [ "$(ct systemctl show exoctl -p Result --value)" != success ]; then
  journal | grep -E '"event": "(stopping|stopped)"|Watchdog|Killing' | tail -4
  fail "the stop did not end in success (a daemon that logged a clean stop and was then ended by the watchdog took longer than WatchdogSec to exit)"
fi
refused=$(journal | grep -ci "operation not permitted" || true)
echo "refused calls in the journal: $refused"
ct systemd-analyze security exoctl --no-pager | tail -1
[ "$refused" = 0 ] || fail "a call was refused"
echo "run-in-container: ok"
