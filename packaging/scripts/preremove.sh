#!/bin/sh
# cbr-agent preremove. deb: prerm remove | upgrade | deconfigure | failed-upgrade; rpm: %preun with
# $1 = 0 on erase, 1 on upgrade. On removal: stop and disable the service, then mark the agent
# 'uninstall' on the control plane, best effort: a short timeout, and removal goes on whatever happens.
set -e
root=${DPKG_ROOT:-}
prefix=$root/opt/cbr-agent
state=$root/var/lib/cbr-agent
unit=cbr-agent.service

say() { echo "cbr-agent: $*" >&2; }

case "${1:-}" in
    remove|0) ;;
    *) exit 0 ;;  # upgrades keep the service running; the new postinst restarts it
esac

# stop first: a running daemon would heartbeat the agent back to 'normal'. As %systemd_preun and
# dh_installsystemd: disable --now where systemd runs, disable (the wants/ link) where it does not.
if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
    if [ -d /run/systemd/system ]; then
        systemctl --no-reload disable --now "$unit" >/dev/null 2>&1 || true
    else
        systemctl --no-reload disable "$unit" >/dev/null 2>&1 || true
    fi
fi

# only an agent that has an identity was ever registered
if [ -f "$state/identity.json" ] && [ -x "$prefix/venv/bin/cbr-agent" ]; then
    set -- --state-dir "$state"
    if [ -n "$root" ] && [ -f "$root/etc/cbr-agent/agent.toml" ]; then
        set -- "$@" --config "$root/etc/cbr-agent/agent.toml"
    fi
    if (
        # the service's settings and secrets (KEY=VALUE lines) for the CLI
        if [ -r "$root/etc/cbr-agent/agent.env" ]; then set -a; . "$root/etc/cbr-agent/agent.env"; set +a; fi
        exec timeout -k 5 20 "$prefix/venv/bin/cbr-agent" uninstall "$@" </dev/null >/dev/null 2>&1
    ); then
        say "marked the agent 'uninstall' on its control plane"
    else
        say "warning: could not mark the agent 'uninstall' on its control plane (removal goes on)"
    fi
fi

# tells a later reinstall (deb keeps the config after 'remove') to enable the service again
if [ -d "$state" ]; then : > "$state/.package-removed" || true; fi
exit 0
