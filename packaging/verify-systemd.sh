#!/bin/sh
# packaging/verify-systemd.sh: check a .deb under a real systemd, in a Debian 12 container booted with
# systemd-nspawn, against a `cbr-agent server` on this host's loopback. What the test suite cannot do
# on a machine without a running systemd: the service started under its hardening, reload, and the
# systemctl steps of the package scripts and of install.sh.
#
#   packaging/verify-systemd.sh DEB [WORKDIR]
#
# Not part of the test suite: it needs root, `apt-get install debootstrap systemd-container`, and a
# Debian mirror for the first run (the container's root is kept in WORKDIR, default
# /var/tmp/cbr-agent-verify, and reused). Prints PASS/FAIL per check; exit code 0 when all passed,
# 1 when one failed, 2 on a usage or setup error.
set -eu

deb=${1:-}
work=${2:-/var/tmp/cbr-agent-verify}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
[ -f "$deb" ] || { echo "usage: $0 DEB [WORKDIR]" >&2; exit 2; }
for tool in debootstrap systemd-nspawn nsenter; do
    command -v "$tool" >/dev/null 2>&1 || { echo "verify: $tool is missing" >&2; exit 2; }
done
root=$work/root
failed=0
check() { name=$1; shift; if "$@" >/dev/null 2>&1; then echo "PASS $name"; else echo "FAIL $name"; failed=1; fi; }
contains() { printf '%s' "$1" | grep -q -- "$2"; }

if [ ! -x "$root/lib/systemd/systemd" ]; then
    echo "verify: building a Debian 12 root in $root (once)" >&2
    mkdir -p "$work"
    debootstrap --variant=minbase --include=systemd,systemd-sysv,dbus,python3 bookworm "$root" \
        http://deb.debian.org/debian >"$work/debootstrap.log" 2>&1 || { echo "verify: debootstrap failed" >&2; exit 2; }
fi
# start from a clean slate: no agent, a fresh machine id on boot
chroot "$root" dpkg --purge cbr-agent >/dev/null 2>&1 || true
: > "$root/etc/machine-id"
rm -f "$root/var/lib/dbus/machine-id"
ln -s /etc/machine-id "$root/var/lib/dbus/machine-id"
cp "$deb" "$root/root/cbr-agent.deb"
cp "$here/install.sh" "$root/root/install.sh"

# a control plane on loopback (the container shares the host's network)
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
sk=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
umask 077
printf '[[access_keys]]\nak = "AKVERIFY"\nsk = "%s"\nproject_id = "verify"\n' "$sk" > "$work/credentials.toml"
printf 'CBR_AGENT_ENDPOINT=http://127.0.0.1:%s\nCBR_AGENT_PROJECT_ID=verify\nCBR_AGENT_AK=AKVERIFY\nCBR_AGENT_SK=%s\nCBR_AGENT_INSTALL_PATHS=/etc,/home\nCBR_AGENT_HEARTBEAT_INTERVAL=5\n' \
    "$port" "$sk" > "$root/root/settings"
rm -f "$work/controlplane.db"
(cd "$repo" && exec python3 -m cbr_agent server --host 127.0.0.1 --port "$port" --db "$work/controlplane.db" \
    --credentials "$work/credentials.toml") >"$work/server.log" 2>&1 &
server=$!
systemd-nspawn -q -b --register=no --keep-unit --console=passive -D "$root" >"$work/boot.log" 2>&1 &
nspawn=$!
cleanup() {
    if [ -n "${init:-}" ]; then nsenter -t "$init" -a systemctl poweroff >/dev/null 2>&1 || true; fi
    sleep 3
    kill "$nspawn" "$server" 2>/dev/null || true
    wait 2>/dev/null || true
}
trap cleanup EXIT INT TERM

init=""
for _ in $(seq 60); do
    init=$(ps --ppid "$nspawn" -o pid= | tr -d ' ' | head -n 1)
    if [ -n "$init" ] && nsenter -t "$init" -a systemctl is-system-running 2>/dev/null | grep -q -E 'running|degraded'; then
        break
    fi
    sleep 1
done
[ -n "$init" ] || { echo "verify: the container did not boot (see $work/boot.log)" >&2; exit 2; }
in_ct() { nsenter -t "$init" -a "$@"; }

first=$(in_ct sh /root/install.sh --settings /root/settings --package /root/cbr-agent.deb 2>&1) || true
echo "$first" | sed 's/^/  /'
check "install.sh starts the service" contains "$first" "service: started"
check "the service is active" in_ct systemctl is-active --quiet cbr-agent
check "the service is enabled" in_ct systemctl is-enabled --quiet cbr-agent
sleep 2
show=$(in_ct systemctl show cbr-agent -p StatusText -p CapabilityBoundingSet -p WatchdogUSec -p NRestarts)
echo "$show" | sed 's/^/  /'
check "READY and STATUS arrived" contains "$show" "StatusText=agent "
check "capabilities are bounded" contains "$show" "CapabilityBoundingSet=cap_dac_read_search cap_fowner"
check "the watchdog is armed" contains "$show" "WatchdogUSec=2min"
check "reload works" in_ct systemctl reload cbr-agent
second=$(in_ct sh /root/install.sh --settings /root/settings --package /root/cbr-agent.deb 2>&1) || true
check "install.sh a second time changes nothing" contains "$second" "result: unchanged"
check "the second run left the service running" contains "$second" "service: running"
agent=$(in_ct cbr-agent status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["agent_id"])')
check "dpkg --purge succeeds" in_ct dpkg --purge cbr-agent
check "the service is gone" sh -c "! nsenter -t $init -a systemctl is-active --quiet cbr-agent"
fleet=$(cd "$repo" && CBR_AGENT_AK=AKVERIFY CBR_AGENT_SK=$sk python3 -m cbr_agent agents --json \
    --endpoint "http://127.0.0.1:$port" --project-id verify --state-dir "$work/cli-state")
check "removal marked the agent uninstall" python3 -c "
import json, sys
agents = {a['agent_id']: a['status'] for a in json.loads(sys.argv[1])['agents']}
sys.exit(agents.get(sys.argv[2]) != 'uninstall')" "$fleet" "$agent"
[ "$failed" = 0 ] && echo "verify: all checks passed" || echo "verify: some checks FAILED"
exit "$failed"
