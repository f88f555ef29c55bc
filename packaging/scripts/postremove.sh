#!/bin/sh
# cbr-agent postremove. deb: postrm remove | purge | upgrade | failed-upgrade | abort-* | disappear;
# rpm: %postun with $1 = 0 on erase, 1 on upgrade. Removes the virtual environment built by the
# postinstall (no package owns what is in it). Purge (deb) also removes the config, the state and
# the cache, but never backups: a repository in the state dir that holds snapshots stays, with its
# password, and purge says where they are (as database packages leave their data). Upgrades keep
# everything: agent id, config and state.
set -e
root=${DPKG_ROOT:-}
prefix=$root/opt/cbr-agent
etc=$root/etc/cbr-agent
state=$root/var/lib/cbr-agent

say() { echo "cbr-agent: $*" >&2; }

case "${1:-}" in
    remove|purge|0) ;;
    *) exit 0 ;;
esac

rm -rf "$prefix/venv" "$prefix/venv.new" "$prefix/venvs"
rmdir "$prefix/libexec" "$prefix/wheels" "$prefix" 2>/dev/null || true

# how many snapshots the repository in directory $1 holds (files of snapshots/, not temporary ones)
snapshot_count() {
    if [ -d "$1/snapshots" ]; then
        find "$1/snapshots" -maxdepth 1 -type f ! -name '.*' | wc -l | tr -d ' '
    else
        echo 0
    fi
}

# the repository the config names, when it is not the default one in the state dir
configured_elsewhere() {
    where=$(sed -n 's/^[[:space:]]*repository[[:space:]]*=[[:space:]]*["'\'']\(.*\)["'\''][[:space:]]*$/\1/p' \
        "$etc/agent.toml" 2>/dev/null | tail -n 1)
    if [ -z "$where" ] && [ -f "$etc/agent.env" ]; then
        where=$(sed -n 's/^[[:space:]]*CBR_AGENT_REPOSITORY=//p' "$etc/agent.env" | tail -n 1)
    fi
    case "$where" in
        ""|/var/lib/cbr-agent/repository|file:///var/lib/cbr-agent/repository) return 1 ;;
    esac
    echo "$where"
}

# remove everything in directory $1 except the names that follow
remove_all_but() {
    dir=$1; shift
    [ -d "$dir" ] || return 0
    for entry in "$dir"/* "$dir"/.[!.]* "$dir"/..?*; do
        [ -e "$entry" ] || [ -L "$entry" ] || continue
        keep=no
        for name in "$@"; do
            if [ "$entry" = "$dir/$name" ]; then keep=yes; fi
        done
        if [ "$keep" = no ]; then rm -rf "$entry"; fi
    done
    rmdir "$dir" 2>/dev/null || true
}

if [ "$1" = purge ]; then
    keep_state=""
    keep_etc=""
    snapshots=$(snapshot_count "$state/repository")
    elsewhere=$(configured_elsewhere || true)
    if [ "$snapshots" -gt 0 ]; then
        keep_state="repository"
        say "purge kept the repository $state/repository: it holds $snapshots snapshot(s), the backups" \
            "of this host"
    fi
    if [ -n "$elsewhere" ]; then
        say "the repository configured in $etc/agent.toml, $elsewhere, was not touched"
    fi
    if [ -n "$keep_state" ] || [ -n "$elsewhere" ]; then
        for pw in "$state/repository.password" "$etc/repository.password"; do
            [ -f "$pw" ] || continue
            case "$pw" in
                "$state"/*) keep_state="$keep_state repository.password" ;;
                *) keep_etc="repository.password" ;;
            esac
            say "purge kept its password $pw: without it the backups cannot be restored"
        done
        # a password set in the config file itself (the 'password' key) goes nowhere either
        if grep -qs '^[[:space:]]*password[[:space:]]*=' "$etc/agent.toml"; then
            keep_etc="$keep_etc agent.toml"
            say "purge kept $etc/agent.toml: it holds the repository's password"
        fi
        say "delete them by hand once they are no longer needed"
    fi
    # shellcheck disable=SC2086 # the kept names hold no spaces
    remove_all_but "$state" $keep_state
    remove_all_but "$etc" $keep_etc
    rm -rf "$root/var/cache/cbr-agent"
fi

if [ -z "$root" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl daemon-reload || true
fi
exit 0
