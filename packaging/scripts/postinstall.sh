#!/bin/sh
# cbr-agent postinstall. deb: postinst configure [old-version] | abort-*; rpm: %post with $1 = 1 on
# install, 2 on upgrade. Creates the agent's dirs, builds its virtual environment offline from the
# shipped wheels, and follows each family's systemd conventions: deb (as dh_installsystemd) enables
# the service on install and starts it when systemd runs; rpm (as %systemd_post) applies the
# distribution's preset on install and starts nothing (install.sh enables and starts it). Both
# restart a running service on upgrade here, in the new package's script, not in the old one's
# %postun as %systemd_postun_with_restart would: the old venv is pruned below, after the restart.
# DPKG_ROOT (dpkg --root ... --force-script-chrootless) installs into another root: nothing is
# done to the running system then.
# CBR_AGENT_NO_START=1 installs without starting the service (fleet scripts, image builds).
set -e
root=${DPKG_ROOT:-}
prefix=$root/opt/cbr-agent
unit=cbr-agent.service
removed_marker=$root/var/lib/cbr-agent/.package-removed

say() { echo "cbr-agent: $*" >&2; }

format=deb
case "${1:-}" in
    configure)
        # a reinstall after 'remove' (config kept) is an install for the service's sake
        if [ -n "${2:-}" ] && [ ! -e "$removed_marker" ]; then action=upgrade; else action=install; fi ;;
    abort-upgrade|abort-remove|abort-deconfigure) action=upgrade ;;
    1) format=rpm; action=install ;;
    [0-9]*) format=rpm; action=upgrade ;;
    *) action=install ;;
esac

# the config dir holds secrets and the state dir the agent's identity: root only
for dir in /etc/cbr-agent /var/lib/cbr-agent /var/cache/cbr-agent; do
    mkdir -p "$root$dir"
    chown root:root "$root$dir"
    chmod 0700 "$root$dir"
done
for file in "$root/etc/cbr-agent/agent.env" "$root/etc/cbr-agent/agent.toml"; do
    if [ -f "$file" ]; then chmod 0600 "$file"; fi
done
rm -f "$removed_marker"

"$prefix/libexec/make-venv"

# the dirs at boot too (tmpfiles.d), as dh_installtmpfiles and %tmpfiles_create do
if [ -z "$root" ] && command -v systemd-tmpfiles >/dev/null 2>&1; then
    systemd-tmpfiles --create /usr/lib/tmpfiles.d/cbr-agent.conf >/dev/null 2>&1 || true
fi

if [ -z "$root" ] && command -v systemctl >/dev/null 2>&1; then
    running=no
    if [ -d /run/systemd/system ]; then running=yes; systemctl daemon-reload || true; fi
    if [ "$action" = install ] && [ "$format" = rpm ]; then
        # %systemd_post: the presets decide; works without a running systemd (image builds)
        systemctl --no-reload preset "$unit" >/dev/null 2>&1 || say "warning: could not preset $unit"
    elif [ "$action" = install ]; then
        # works without a running systemd too (image builds): it only creates the wants/ link
        systemctl enable "$unit" >/dev/null 2>&1 || say "warning: could not enable $unit"
    fi
    if [ "$running" = yes ]; then
        if [ "$action" = upgrade ]; then
            systemctl try-restart "$unit" || say "warning: $unit did not restart; see: journalctl -u $unit"
        elif [ "$format" = rpm ]; then
            : # RPM distributions start no service at install
        elif [ -n "${CBR_AGENT_NO_START:-}" ]; then
            say "not starting $unit (CBR_AGENT_NO_START is set)"
        else
            systemctl start "$unit" || say "warning: $unit did not start; see: journalctl -u $unit"
        fi
    fi
fi

"$prefix/libexec/make-venv" --prune
exit 0
