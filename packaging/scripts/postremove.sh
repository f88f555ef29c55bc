#!/bin/sh
# cbr-agent postremove. deb: postrm remove | purge | upgrade | failed-upgrade | abort-* | disappear;
# rpm: %postun with $1 = 0 on erase, 1 on upgrade. Removes the virtual environment built by the
# postinstall (no package owns it); purge (deb) also removes the config, the state and the cache.
# Upgrades keep everything: agent id, config and state.
set -e
root=${DPKG_ROOT:-}
prefix=$root/opt/cbr-agent

case "${1:-}" in
    remove|purge|0) ;;
    *) exit 0 ;;
esac

rm -rf "$prefix/venv" "$prefix/venv.new" "$prefix/venvs"
rmdir "$prefix/libexec" "$prefix/wheels" "$prefix" 2>/dev/null || true

if [ "$1" = purge ]; then
    rm -rf "$root/etc/cbr-agent" "$root/var/lib/cbr-agent" "$root/var/cache/cbr-agent"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
fi
exit 0
