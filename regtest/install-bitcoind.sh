#!/bin/sh
# Make `bitcoind` and `bitcoin-cli` available to the tests and the demo, without touching the system.
#
# Order of preference:
#   1. BITCOIND / BITCOIN_CLI from the environment (both must be executable);
#   2. bitcoind and bitcoin-cli on PATH;
#   3. Debian unstable's bitcoin-knots (a Bitcoin Core derivative with the same RPC), downloaded with a
#      private apt source list and state directory, unpacked with `dpkg -x` into .cache/bitcoin/ of the
#      project, and run through its own dynamic loader so the system's libraries never matter.
#
# Prints the directory that holds `bitcoind` and `bitcoin-cli` on stdout and nothing else on success
# (so `PATH="$(regtest/install-bitcoind.sh):$PATH"` works); a clear message on stderr and exit 1 on failure.
# Running it again is cheap: an existing, working install is reused.
set -eu

ROOT=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
CACHE=${FROSTFED_BITCOIN_CACHE:-$ROOT/.cache/bitcoin}
BIN=$CACHE/bin

die() {
    echo "install-bitcoind: $*" >&2
    exit 1
}

works() {
    "$1" -version >/dev/null 2>&1
}

if [ -n "${BITCOIND:-}" ] || [ -n "${BITCOIN_CLI:-}" ]; then
    [ -n "${BITCOIND:-}" ] && [ -n "${BITCOIN_CLI:-}" ] || die "set both BITCOIND and BITCOIN_CLI, or neither"
    works "$BITCOIND" || die "BITCOIND=$BITCOIND does not run (\`$BITCOIND -version\` failed)"
    works "$BITCOIN_CLI" || die "BITCOIN_CLI=$BITCOIN_CLI does not run"
    # Offer the pair under the standard names so every caller can simply prepend one directory to PATH.
    mkdir -p "$BIN"
    ln -sf "$(command -v "$BITCOIND")" "$BIN/bitcoind"
    ln -sf "$(command -v "$BITCOIN_CLI")" "$BIN/bitcoin-cli"
    echo "$BIN"
    exit 0
fi

if command -v bitcoind >/dev/null 2>&1 && command -v bitcoin-cli >/dev/null 2>&1 \
    && works "$(command -v bitcoind)"; then
    dirname -- "$(command -v bitcoind)"
    exit 0
fi

if [ -x "$BIN/bitcoind" ] && [ -x "$BIN/bitcoin-cli" ] && works "$BIN/bitcoind"; then
    echo "$BIN"
    exit 0
fi

# --- install Debian unstable's bitcoin-knots into the cache -------------------------------------------
[ "$(uname -m)" = x86_64 ] || die "no bitcoind on PATH, and the automatic install only knows x86_64 (this is $(uname -m)); install bitcoind and put it on PATH, or set BITCOIND and BITCOIN_CLI"
command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 \
    || die "no bitcoind on PATH and no apt-get/dpkg to fetch one; install bitcoind, or set BITCOIND and BITCOIN_CLI"
KEYRING=/usr/share/keyrings/debian-archive-keyring.gpg
[ -r "$KEYRING" ] || die "no bitcoind on PATH and $KEYRING is missing (package debian-archive-keyring); install bitcoind, or set BITCOIND and BITCOIN_CLI"

PACKAGES="bitcoin-knots libstdc++6 libgcc-s1 libevent-core-2.1-7t64 libevent-extra-2.1-7t64
libevent-pthreads-2.1-7t64 libzmq5 libsqlite3-0 libc6 libsodium26 libpgm-5.3-0t64 libnorm1t64 libbsd0
libmd0 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libcom-err2 libkrb5support0 libkeyutils1 libssl3t64"

APT=$CACHE/apt
DEBS=$APT/debs
ROOTFS=$CACHE/root
LOG=$APT/log
rm -rf "$ROOTFS" "$BIN"
mkdir -p "$APT/lists/partial" "$DEBS" "$ROOTFS" "$BIN"
: >"$LOG"
echo "deb [signed-by=$KEYRING] http://deb.debian.org/debian sid main" >"$APT/sources.list"
# A private cache and status file too, so nothing under /var is read or written.
: >"$APT/status"
mkdir -p "$APT/archives/partial"
set -- -o "Dir::Etc::SourceList=$APT/sources.list" -o Dir::Etc::SourceParts=/dev/null \
    -o "Dir::State::Lists=$APT/lists" -o "Dir::State::status=$APT/status" \
    -o "Dir::Cache=$APT/cache" -o "Dir::Cache::archives=$APT/archives" \
    -o APT::Sandbox::User=root -q

apt-get "$@" update >>"$LOG" 2>&1 \
    || die "apt-get update from deb.debian.org (sid) failed; see $LOG"
# shellcheck disable=SC2086
(cd "$DEBS" && apt-get "$@" download $PACKAGES) >>"$LOG" 2>&1 \
    || die "downloading bitcoin-knots and its libraries failed; see $LOG"
for deb in "$DEBS"/*.deb; do
    dpkg -x "$deb" "$ROOTFS" || die "unpacking $deb failed"
done

LIBDIR=$ROOTFS/usr/lib/x86_64-linux-gnu
LOADER=$LIBDIR/ld-linux-x86-64.so.2
[ -e "$LOADER" ] || die "the unpacked libc6 has no $LOADER"
for tool in bitcoind bitcoin-cli; do
    [ -x "$ROOTFS/usr/bin/$tool" ] || die "the bitcoin-knots package has no usr/bin/$tool"
    cat >"$BIN/$tool" <<EOF
#!/bin/sh
# Runs Debian's bitcoin-knots $tool with the libraries unpacked beside it (regtest/install-bitcoind.sh).
exec "$LOADER" --library-path "$LIBDIR" "$ROOTFS/usr/bin/$tool" "\$@"
EOF
    chmod +x "$BIN/$tool"
done
# Package downloads are no longer needed once unpacked.
rm -rf "$DEBS" "$APT/archives" "$APT/cache"

works "$BIN/bitcoind" || die "the installed bitcoind does not run: $("$BIN/bitcoind" -version 2>&1 | head -n 3)"
echo "$BIN"
