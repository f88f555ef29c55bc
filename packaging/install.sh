#!/bin/sh
# packaging/install.sh: install, configure, register and start cbr-agent on this host, unattended.
#
#   install.sh [--package FILE] [--settings FILE] [--path DIR]... [--exclude PATTERN]...
#              [--no-start] [--root DIR]
#
# Settings come from the environment or from --settings FILE (KEY=VALUE lines, read, never executed;
# the environment wins). Secrets are never accepted as arguments (they would show in `ps`).
#   CBR_AGENT_ENDPOINT        control plane URL                                   (required)
#   CBR_AGENT_PROJECT_ID      project id                                          (required)
#   CBR_AGENT_AK + CBR_AGENT_SK, or CBR_AGENT_TOKEN   credentials                 (required)
#   CBR_AGENT_CA_BUNDLE, CBR_AGENT_HOST_NICKNAME, CBR_AGENT_AGENT_TYPE,
#   CBR_AGENT_HEARTBEAT_INTERVAL, CBR_AGENT_BACKUP_SCHEDULE                      (optional)
#   CBR_AGENT_INSTALL_PATHS     backup paths, comma-separated (adds to --path)
#   CBR_AGENT_INSTALL_EXCLUDES  excludes, comma-separated (adds to --exclude)
#   CBR_AGENT_PACKAGE           the .deb/.rpm to install (same as --package)
# Without --package, the newest cbr-agent package for this system is taken from dist/ next to this
# script (../dist) or from this script's own directory.
#
# --no-start  install, configure and register, but leave the service stopped
# --root DIR  install into another root with dpkg --root (tests, staging); works on that tree from
#             this host (its config names files by their path on this host) and never starts a service
#
# Running it again with the same settings changes nothing. Every step prints one line
# "cbr-agent-install: STEP: WHAT"; the last line is "cbr-agent-install: result: changed" or
# "cbr-agent-install: result: unchanged".
# Exit codes: 0 done; 1 a step failed (the message names it); 2 usage error or a missing or invalid
# setting (nothing was changed); 3 not run as root; 4 control plane unreachable; 5 control plane
# refused the credentials or the project; 6 no package found for this system; 7 the package could
# not be installed; 8 the service did not start.
set -eu

PROG=cbr-agent-install
here=$(cd "$(dirname "$0")" && pwd)

say() { echo "$PROG: $*"; }
fail() { code=$1; shift; echo "$PROG: error: $*" >&2; exit "$code"; }
usage() { sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0; }
needs_value() { [ "$1" -ge 2 ] || fail 2 "$2 needs a value (see: install.sh --help)"; }

# -- arguments ----------------------------------------------------------------------------------
package=${CBR_AGENT_PACKAGE:-}
settings_file=""
start=yes
root=""
paths=""
excludes=""
nl='
'
while [ $# -gt 0 ]; do
    case "$1" in
        --package) needs_value $# "$1"; package=$2; shift 2 ;;
        --settings) needs_value $# "$1"; settings_file=$2; shift 2 ;;
        --path) needs_value $# "$1"; paths="$paths$2$nl"; shift 2 ;;
        --exclude) needs_value $# "$1"; excludes="$excludes$2$nl"; shift 2 ;;
        --no-start) start=no; shift ;;
        --root) needs_value $# "$1"; root=$2; shift 2 ;;
        -h|--help) usage ;;
        --sk|--sk=*|--token|--token=*|--security-token|--security-token=*|--password|--password=*)
            fail 2 "$1 is not accepted: a secret on the command line is visible in 'ps';" \
                "set CBR_AGENT_SK/CBR_AGENT_TOKEN in the environment or in --settings FILE" ;;
        *) fail 2 "unknown argument '$1' (see: install.sh --help)" ;;
    esac
done

# -- settings -----------------------------------------------------------------------------------
# KEY=VALUE lines of CBR_AGENT_* keys; one pair of surrounding quotes is removed; '#' starts a comment
load_settings_file() {
    [ -r "$1" ] || fail 2 "cannot read settings file $1"
    case "$(stat -c %a "$1")" in
        *00) ;;
        *) echo "$PROG: warning: $1 is readable by other users; it should be mode 0600" >&2 ;;
    esac
    lineno=0
    while IFS= read -r line || [ -n "$line" ]; do
        lineno=$((lineno + 1))
        case "$line" in ''|'#'*) continue ;; esac
        line=${line#export }
        key=${line%%=*}
        value=${line#*=}
        case "$key" in
            CBR_AGENT_*) ;;
            *) fail 2 "$1 line $lineno: expected CBR_AGENT_KEY=VALUE" ;;
        esac
        case "$key" in *[!A-Z0-9_]*) fail 2 "$1 line $lineno: bad key '$key'" ;; esac
        [ "$key" != "$line" ] || fail 2 "$1 line $lineno: expected CBR_AGENT_KEY=VALUE"
        case "$value" in
            \"*\") value=${value#\"}; value=${value%\"} ;;
            \'*\') value=${value#\'}; value=${value%\'} ;;
        esac
        # the environment wins over the file
        if eval "[ -z \"\${$key+set}\" ]"; then
            export "$key=$value"
        fi
    done < "$1"
}
if [ -n "$settings_file" ]; then load_settings_file "$settings_file"; fi

: "${CBR_AGENT_ENDPOINT:=}" "${CBR_AGENT_PROJECT_ID:=}" "${CBR_AGENT_AK:=}" "${CBR_AGENT_SK:=}"
: "${CBR_AGENT_TOKEN:=}"
[ -n "$CBR_AGENT_ENDPOINT" ] || fail 2 "CBR_AGENT_ENDPOINT is not set (the control plane URL)"
[ -n "$CBR_AGENT_PROJECT_ID" ] || fail 2 "CBR_AGENT_PROJECT_ID is not set"
if [ -n "$CBR_AGENT_AK" ] || [ -n "$CBR_AGENT_SK" ]; then
    [ -n "$CBR_AGENT_AK" ] && [ -n "$CBR_AGENT_SK" ] \
        || fail 2 "CBR_AGENT_AK and CBR_AGENT_SK must be set together"
elif [ -z "$CBR_AGENT_TOKEN" ]; then
    fail 2 "no credentials: set CBR_AGENT_AK and CBR_AGENT_SK, or CBR_AGENT_TOKEN"
fi
case "$CBR_AGENT_ENDPOINT" in
    http://*|https://*) ;;
    *) fail 2 "CBR_AGENT_ENDPOINT must be an http:// or https:// URL" ;;
esac

# comma-separated lists join the ones from the command line
add_list() { printf '%s' "$1" | tr ',' '\n' | sed '/^$/d'; }
paths="$paths$(add_list "${CBR_AGENT_INSTALL_PATHS:-}")"
excludes="$excludes$(add_list "${CBR_AGENT_INSTALL_EXCLUDES:-}")"

[ "$(id -u)" = 0 ] || fail 3 "run as root (it installs a package and a system service)"

if [ -n "$root" ]; then
    mkdir -p "$root"
    root=$(cd "$root" && pwd)
fi
changed=no

# -- package ------------------------------------------------------------------------------------
if [ -n "$root" ]; then
    format=deb
elif command -v dpkg >/dev/null 2>&1 && ! command -v rpm >/dev/null 2>&1; then
    format=deb
elif command -v rpm >/dev/null 2>&1 && ! command -v dpkg >/dev/null 2>&1; then
    format=rpm
elif [ -n "$package" ]; then
    format=${package##*.}
elif [ -r /etc/debian_version ]; then
    format=deb
else
    format=rpm
fi
case "$format" in deb|rpm) ;; *) fail 6 "cannot tell whether $package is a .deb or an .rpm" ;; esac

arch_deb=$(uname -m | sed 's/x86_64/amd64/; s/aarch64/arm64/')
arch_rpm=$(uname -m)
if [ -z "$package" ]; then
    for dir in "$here/../dist" "$here"; do
        [ -d "$dir" ] || continue
        if [ "$format" = deb ]; then
            found=$(ls -1t "$dir"/cbr-agent_*_"$arch_deb".deb 2>/dev/null | head -n 1)
        else
            found=$(ls -1t "$dir"/cbr-agent-*."$arch_rpm".rpm 2>/dev/null | head -n 1)
        fi
        if [ -n "$found" ]; then package=$found; break; fi
    done
fi
if [ -n "$package" ]; then
    [ -f "$package" ] || fail 6 "package $package does not exist"
    package=$(cd "$(dirname "$package")" && pwd)/$(basename "$package")
fi

if [ -n "$root" ]; then
    mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
    [ -e "$root/var/lib/dpkg/status" ] || : > "$root/var/lib/dpkg/status"
    [ -e "$root/var/lib/dpkg/available" ] || : > "$root/var/lib/dpkg/available"
fi

# "VERSION-RELEASE" of the installed package, or nothing
installed_version() {
    if [ "$format" = deb ]; then
        set -- dpkg-query -W -f='${db:Status-Status} ${Version}'
        if [ -n "$root" ]; then set -- "$@" --admindir="$root/var/lib/dpkg"; fi
        "$@" cbr-agent 2>/dev/null | sed -n 's/^installed //p'
    else
        rpm -q --qf '%{VERSION}-%{RELEASE}' cbr-agent 2>/dev/null || true
    fi
}

package_version() {
    if [ "$format" = deb ]; then
        dpkg-deb -f "$1" Version 2>/dev/null
    else
        rpm -qp --qf '%{VERSION}-%{RELEASE}' "$1" 2>/dev/null
    fi
}

# the command that installs $package with the system's package manager
install_command() {
    if [ "$format" = deb ]; then
        if [ -n "$root" ]; then
            # python3 is this host's, not in the root's package database
            echo "dpkg --root=$root --force-script-chrootless --force-depends -i"
        elif command -v apt-get >/dev/null 2>&1; then
            echo "env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends"
        else
            echo "dpkg -i"
        fi
    elif command -v dnf >/dev/null 2>&1; then
        echo "dnf install -y -q"
    elif command -v yum >/dev/null 2>&1; then
        echo "yum install -y -q"
    else
        echo "rpm -U"
    fi
}

have=$(installed_version)
if [ -z "$package" ]; then
    [ -n "$have" ] || fail 6 "no cbr-agent .$format package for $(uname -m) in $here/../dist or $here," \
        "and none is installed: build one with packaging/build.sh or give --package FILE"
    say "package: cbr-agent $have already installed (no package file given)"
else
    want=$(package_version "$package") || fail 6 "$package is not a readable .$format package"
    [ -n "$want" ] || fail 6 "$package is not a readable .$format package"
    if [ "$have" = "$want" ]; then
        say "package: cbr-agent $want already installed"
    else
        log=$(mktemp)
        # shellcheck disable=SC2046 # the command is split into words on purpose
        if ! CBR_AGENT_NO_START=1 $(install_command) "$package" >"$log" 2>&1; then
            cat "$log" >&2; rm -f "$log"
            fail 7 "installing $package failed (see above)"
        fi
        rm -f "$log"
        say "package: installed cbr-agent $want from $package"
        changed=yes
    fi
fi

# -- the agent's CLI, as installed ----------------------------------------------------------------
cli=$root/usr/bin/cbr-agent
py=$root/opt/cbr-agent/venv/bin/python
[ -x "$cli" ] || fail 1 "the package did not install $cli"
set --
if [ -n "$root" ]; then
    set -- --config "$root/etc/cbr-agent/agent.toml" --state-dir "$root/var/lib/cbr-agent"
fi
common_args=$*
config=$root/etc/cbr-agent/agent.toml

# runs the CLI with no CBR_AGENT_* in its environment: it must find everything in the config now
agent() {
    (
        for name in $(env | sed -n 's/^\(CBR_AGENT_[A-Z0-9_]*\)=.*/\1/p'); do unset "$name"; done
        # shellcheck disable=SC2086 # common_args holds paths without spaces
        exec "$cli" "$@" $common_args
    )
}

json_field() { "$py" -c 'import json, sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

agent_exit() {
    case "$1" in
        2) fail 2 "$2" ;;
        4) fail 4 "$2" ;;
        5) fail 5 "$2" ;;
        *) fail 1 "$2" ;;
    esac
}

# -- configuration and registration ---------------------------------------------------------------
if [ -n "$root" ]; then
    for dir in /etc/cbr-agent /var/lib/cbr-agent; do mkdir -p "$root$dir"; chmod 0700 "$root$dir"; done
fi
set -- register --json --endpoint "$CBR_AGENT_ENDPOINT" --project-id "$CBR_AGENT_PROJECT_ID"
if [ -n "$CBR_AGENT_AK" ]; then set -- "$@" --ak "$CBR_AGENT_AK"; fi
[ -z "${CBR_AGENT_CA_BUNDLE:-}" ] || set -- "$@" --ca-bundle "$CBR_AGENT_CA_BUNDLE"
[ -z "${CBR_AGENT_HOST_NICKNAME:-}" ] || set -- "$@" --host-nickname "$CBR_AGENT_HOST_NICKNAME"
[ -z "${CBR_AGENT_AGENT_TYPE:-}" ] || set -- "$@" --agent-type "$CBR_AGENT_AGENT_TYPE"
[ -z "${CBR_AGENT_HEARTBEAT_INTERVAL:-}" ] || set -- "$@" --heartbeat-interval "$CBR_AGENT_HEARTBEAT_INTERVAL"
[ -z "${CBR_AGENT_BACKUP_SCHEDULE:-}" ] || set -- "$@" --backup-schedule "$CBR_AGENT_BACKUP_SCHEDULE"
[ -z "${CBR_AGENT_SECURITY_TOKEN:-}" ] || export CBR_AGENT_SECURITY_TOKEN
# the secrets reach 'register' through its environment only; it keeps them in a 0600 file
out=$(mktemp)
trap 'rm -f "$out"' EXIT
rc=0
(
    export CBR_AGENT_SK CBR_AGENT_TOKEN
    [ -n "$CBR_AGENT_SK" ] || unset CBR_AGENT_SK
    [ -n "$CBR_AGENT_TOKEN" ] || unset CBR_AGENT_TOKEN
    # shellcheck disable=SC2086
    exec "$cli" "$@" $common_args
) >"$out" || rc=$?
[ "$rc" = 0 ] || agent_exit "$rc" "registering with $CBR_AGENT_ENDPOINT failed (exit $rc; the message is above)"
agent_id=$(json_field agent_id < "$out")
config_changed=$(json_field config_changed < "$out")
credentials=$(json_field credentials_file < "$out")
if [ "$config_changed" = True ] || [ "$credentials" != None ]; then
    say "config: written to $config"
    changed=yes
    config_changed=yes
else
    say "config: $config unchanged"
    config_changed=no
fi
say "agent: $agent_id registered with $CBR_AGENT_ENDPOINT"

# -- backup paths -------------------------------------------------------------------------------
if [ -n "$paths" ]; then
    before=$(agent path list --json) || agent_exit $? "listing the backup paths failed"
    set -- path add --json
    old_ifs=$IFS; IFS=$nl
    for p in $paths; do set -- "$@" "$p"; done
    for e in $excludes; do set -- "$@" --exclude "$e"; done
    IFS=$old_ifs
    agent "$@" >/dev/null || agent_exit $? "adding the backup paths failed"
    after=$(agent path list --json) || agent_exit $? "listing the backup paths failed"
    if [ "$before" = "$after" ]; then
        say "paths: unchanged"
    else
        say "paths: updated ($(printf '%s' "$paths" | sed '/^$/d' | paste -sd ' ' -))"
        changed=yes
    fi
fi

# -- service ------------------------------------------------------------------------------------
if [ -n "$root" ]; then
    say "service: left alone (--root)"
elif [ "$start" = no ]; then
    say "service: left as it is (--no-start)"
elif [ ! -d /run/systemd/system ] || ! command -v systemctl >/dev/null 2>&1; then
    say "service: not started (systemd is not running here; run 'cbr-agent run' under your supervisor)"
else
    if ! systemctl is-enabled --quiet cbr-agent.service 2>/dev/null; then
        systemctl enable --quiet cbr-agent.service || fail 8 "systemctl enable cbr-agent failed"
        changed=yes
    fi
    if ! systemctl is-active --quiet cbr-agent.service; then
        systemctl start cbr-agent.service \
            || fail 8 "cbr-agent.service did not start; see: journalctl -u cbr-agent -n 50"
        say "service: started"
        changed=yes
    elif [ "$config_changed" = yes ]; then
        systemctl restart cbr-agent.service \
            || fail 8 "cbr-agent.service did not restart; see: journalctl -u cbr-agent -n 50"
        say "service: restarted (new configuration)"
        changed=yes
    else
        say "service: running"
    fi
fi

if [ "$changed" = yes ]; then say "result: changed"; else say "result: unchanged"; fi
