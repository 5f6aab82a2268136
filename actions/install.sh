#!/usr/bin/env bash
# Installs the one `gangplank` executable for the step that follows; shared by the five actions (issue 6), which
# then run `"$GANGPLANK_BIN" <step>`.
#
#   bash actions/install.sh
#
# Writes `path=<absolute path of gangplank>` to $GITHUB_OUTPUT (to stdout when it is unset).
# The first way that applies wins:
#
# 1. GANGPLANK_BIN_DIR is set: the `gangplank` already there is used as it is (a self-hosted runner with
#    gangplank preinstalled, or a test's stand-in). Nothing is downloaded or built.
# 2. The action runs from a checkout of this repository (`uses: ./actions/...`, its path is inside
#    GITHUB_WORKSPACE): build from source, see 4.
# 3. The action's ref is a released version (`vX.Y.Z`, or a commit whose actions/checksums.txt lists archives,
#    which only release commits do): download `gangplank-<version>-<target>.tar.gz` over HTTPS with retries and
#    check its SHA-256 against actions/checksums.txt next to this script: one archive per target, holding
#    `gangplank`, and one list of digests for all of them. It fails closed: no sha256sum/shasum,
#    no entry for the archive, or a mismatch each stop the step before anything is extracted.
# 4. Otherwise (a branch, an unreleased commit): `cargo build --release --locked -p gangplank` from the action's
#    own source, with the target directory under RUNNER_TOOL_CACHE so the next step of the job (and later runs on
#    the same runner) finds it built and cargo has nothing to do.
#
# GANGPLANK_RELEASE_CHECKOUT=true says that the checkout is the release commit of the `vX.Y.Z` ref given in
# GANGPLANK_ACTION_REF (the pipeline's first job, dispatched at a release tag and checked out there): rule 2 then
# gives way to 3, and the release archive, the same program, is downloaded and checked instead of compiled.
# With any other ref it changes nothing.
#
# GANGPLANK_DOWNLOAD_URL overrides the base URL (default: the releases of the repository the action came from).
# Plain http is accepted only when that override names a loopback host (127.0.0.0/8, localhost, [::1]): traffic
# that never leaves the machine cannot be tampered with on the way, and the checksum is still enforced. Tests
# serve archives that way; anything else must be https. The host is read exactly: the whole authority must be
# the loopback host and an optional port (`http://127.0.0.1.evil.example` and `http://127.0.0.1@evil.example`
# name other hosts and are refused). A plain-http download follows no redirect at all; an https one follows
# at most 5, each over https only (GitHub serves release assets by a redirect to its object store, so the
# redirect itself cannot be refused; the pinned SHA-256 is what makes any server's answer trustworthy).
# The archive must hold no symlink or hard link, and only the executable is extracted from it: a linked top
# folder would make the chmod below reach a file outside the install folder.
set -euo pipefail

die() {
    if [[ ${GITHUB_ACTIONS:-} == true ]]; then
        printf '::error title=gangplank install::%s\n' "$1" >&2
    else
        printf 'error: %s\n' "$1" >&2
    fi
    [[ -n ${2:-} ]] && printf 'hint: %s\n' "$2" >&2
    exit 2
}
say() { printf 'gangplank install: %s\n' "$*" >&2; }

# Every step runs the same executable, so there is nothing to choose; an argument is a caller written for the
# five separate binaries, refused rather than silently ignored.
[[ $# -eq 0 ]] ||
    die "install.sh takes no arguments (got \`$1\`)" \
        "every action runs the one gangplank executable: call \`bash install.sh\`, then \`\"\$GANGPLANK_BIN\" <step>\`"
bin=gangplank

emit() {
    if [[ -n ${GITHUB_OUTPUT:-} ]]; then
        printf 'path=%s\n' "$1" >>"$GITHUB_OUTPUT"
    else
        printf 'path=%s\n' "$1"
    fi
}

here=$(cd "${BASH_SOURCE[0]%/*}" && pwd)
root=${here%/*}
checksums=$here/checksums.txt

# 1. Preinstalled.
if [[ -n ${GANGPLANK_BIN_DIR:-} ]]; then
    [[ -f $GANGPLANK_BIN_DIR/$bin && -x $GANGPLANK_BIN_DIR/$bin ]] ||
        die "GANGPLANK_BIN_DIR is set but $GANGPLANK_BIN_DIR/$bin is not an executable file" \
            "unset GANGPLANK_BIN_DIR to download or build gangplank, or install it there"
    say "using $GANGPLANK_BIN_DIR/$bin (GANGPLANK_BIN_DIR)"
    emit "$(cd "$GANGPLANK_BIN_DIR" && pwd)/$bin"
    exit 0
fi

# The target triple of the runner.
os=${RUNNER_OS:-$(uname -s)}
arch=${RUNNER_ARCH:-$(uname -m)}
case $os in
    # The Linux archives are static (musl): one binary for every distribution and libc, no shared libraries.
    Linux) os=unknown-linux-musl ;;
    macOS | Darwin) os=apple-darwin ;;
    *) die "runner OS \`$os\` is not supported" "gangplank runs on Linux and macOS runners" ;;
esac
case $arch in
    X64 | x86_64 | amd64) arch=x86_64 ;;
    ARM64 | arm64 | aarch64) arch=aarch64 ;;
    *) die "runner architecture \`$arch\` is not supported" "gangplank runs on x86_64 and aarch64 runners" ;;
esac
target=$arch-$os

# The action's ref: given by the action.yml, else the runner's variable, else read from where the runner put
# the action (`.../_actions/<owner>/<repo>/<ref>/actions/<name>`).
action_path=${GANGPLANK_ACTION_PATH:-${GITHUB_ACTION_PATH:-$here}}
ref=${GANGPLANK_ACTION_REF:-${GITHUB_ACTION_REF:-}}
origin=""
if [[ $root == */_actions/*/*/* ]]; then
    rest=${root#*/_actions/}
    IFS=/ read -r owner repo path_ref _ <<<"$rest"
    origin=$owner/$repo
    [[ -z $ref ]] && ref=$path_ref
fi

local_checkout=false
if [[ -n ${GITHUB_WORKSPACE:-} && $action_path == "$GITHUB_WORKSPACE"/* ]]; then
    local_checkout=true
fi

if [[ $local_checkout == true && ${GANGPLANK_RELEASE_CHECKOUT:-} == true && $ref =~ ^v[0-9]+\.[0-9]+\.[0-9]+$ ]]; then
    say "the checkout is release $ref (GANGPLANK_RELEASE_CHECKOUT): installing its archive instead of building"
    local_checkout=false
fi

# Released version: from an exact `vX.Y.Z` ref, else from the archives a release commit's checksums.txt lists.
version=""
if [[ $ref =~ ^v([0-9]+\.[0-9]+\.[0-9]+)$ ]]; then
    version=${BASH_REMATCH[1]}
elif [[ -f $checksums ]]; then
    while read -r sum name; do
        if [[ $sum =~ ^[0-9a-f]{64}$ && $name =~ ^gangplank-([0-9]+\.[0-9]+\.[0-9]+)- ]]; then
            version=${BASH_REMATCH[1]}
            break
        fi
    done <"$checksums"
fi

build_from_source() {
    command -v cargo >/dev/null 2>&1 ||
        die "cannot build $bin from source: cargo is not installed" \
            "use a released version of the action (@vX.Y.Z), or install Rust first (rustup)"
    [[ -f $root/Cargo.toml ]] || die "cannot build $bin from source: $root/Cargo.toml is missing"
    local cache=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/gangplank/source
    mkdir -p "$cache/bin"
    say "building $bin from $root (ref: ${ref:-local checkout}); target dir $cache/target"
    CARGO_TARGET_DIR=$cache/target cargo build --release --locked --quiet \
        --manifest-path "$root/Cargo.toml" -p "$bin" >&2
    cp "$cache/target/release/$bin" "$cache/bin/$bin.new"
    mv -f "$cache/bin/$bin.new" "$cache/bin/$bin"
    emit "$cache/bin/$bin"
}

if [[ $local_checkout == true || -z $version ]]; then
    build_from_source
    exit 0
fi

# 3. Released: download, verify, extract.
archive=gangplank-$version-$target.tar.gz

if command -v sha256sum >/dev/null 2>&1; then
    hash_file() { local h _; read -r h _ < <(sha256sum "$1"); printf '%s' "$h"; }
elif command -v shasum >/dev/null 2>&1; then
    hash_file() { local h _; read -r h _ < <(shasum -a 256 "$1"); printf '%s' "$h"; }
else
    die "neither sha256sum nor shasum is installed: refusing to install $archive unverified" \
        "install coreutils (sha256sum) or perl's shasum on the runner"
fi

expected=""
if [[ -f $checksums ]]; then
    while read -r sum name; do
        if [[ $name == "$archive" && $sum =~ ^[0-9a-f]{64}$ ]]; then
            expected=$sum
            break
        fi
    done <"$checksums"
fi
[[ -n $expected ]] ||
    die "no SHA-256 for $archive in $checksums: refusing to install it unverified" \
        "use a released version of the action whose checksums.txt lists $target, or build from source with a branch ref"

base=${GANGPLANK_DOWNLOAD_URL:-https://github.com/${origin:-gangplank-dev/gangplank}/releases/download}
base=${base%/}
url=$base/v$version/$archive
# The host of a plain-http URL is loopback only when the whole authority (up to the first `/`, `?` or `#`) is
# one: no user info, nothing after the address but a port.
octet='(25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])'
loopback_re="^(localhost|127\.$octet\.$octet\.$octet|\[::1\])(:[0-9]{1,5})?\$"
proto='=https'
redirects=(--proto-redir =https --max-redirs 5)
case $url in
    https://*) ;;
    http://*)
        authority=${url#http://}
        authority=${authority%%[/?#]*}
        [[ $authority =~ $loopback_re ]] ||
            die "refusing to download from $url: only https is allowed (plain http only from a loopback host)" \
                "GANGPLANK_DOWNLOAD_URL must be an https URL, or http://127.0.0.1[:port]/… for a server on this machine"
        [[ -n ${GANGPLANK_DOWNLOAD_URL:-} ]] || die "refusing to download over http: $url"
        proto='=http'
        redirects=(--max-redirs 0)
        say "downloading over plain http from loopback (GANGPLANK_DOWNLOAD_URL)"
        ;;
    *) die "refusing to download from $url: only https is allowed" "GANGPLANK_DOWNLOAD_URL must be an https URL" ;;
esac

cache=${RUNNER_TOOL_CACHE:-${RUNNER_TEMP:-${TMPDIR:-/tmp}}}/gangplank/$version/$target
mkdir -p "$cache"
# The archive is verified on every run, also when it came from the cache: the check is cheap and the cache
# directory may outlive the job on a self-hosted runner.
if [[ ! -f $cache/$archive || $(hash_file "$cache/$archive") != "$expected" ]]; then
    rm -f "$cache/$archive"
    tmp=$(mktemp "$cache/.download.XXXXXX")
    say "downloading $url"
    if ! curl --proto "$proto" "${redirects[@]}" --tlsv1.2 -fsSL --retry 3 --retry-connrefused -o "$tmp" "$url"; then
        rm -f "$tmp"
        die "download of $url failed" "check that release v$version has $archive, or set GANGPLANK_DOWNLOAD_URL"
    fi
    actual=$(hash_file "$tmp")
    if [[ $actual != "$expected" ]]; then
        rm -f "$tmp"
        die "checksum mismatch for $archive: expected $expected, got $actual; refusing to install it" \
            "the download was corrupted or tampered with; do not retry against a mirror you do not trust"
    fi
    mv -f "$tmp" "$cache/$archive"
fi

tmp_base=${RUNNER_TEMP:-${TMPDIR:-/tmp}}
mkdir -p "$tmp_base"
top=gangplank-$version-$target
# `tar -tv` prints each member's type first: `l` a symlink, `h` a hard link.
listing=$(tar -tvzf "$cache/$archive") || die "$archive cannot be read as a gzipped tar archive"
while read -r kind _; do
    [[ $kind == [lh]* ]] &&
        die "$archive holds a link ($kind…): refusing to extract it" \
            "a gangplank release archive holds one folder and one executable; rebuild it with \`cargo xtask dist\`"
done <<<"$listing"
dest=$(mktemp -d "$tmp_base/gangplank-bin.XXXXXX")
tar -xzf "$cache/$archive" -C "$dest" --no-same-owner -- "$top/$bin" 2>/dev/null ||
    die "$archive has no $bin at $top/$bin"
exe=$dest/$top/$bin
[[ -d $dest/$top && ! -L $dest/$top && -f $exe && ! -L $exe ]] || die "$archive has no $bin at $top/$bin"
chmod 0755 "$exe"
say "installed $bin $version ($target), sha256 $expected"
emit "$exe"
