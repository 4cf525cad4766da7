# Installs what this machine lacks to run respite's demo or tests, and puts
# it on PATH. Sourced (not run) by scripts/demo.sh, scripts/test.sh and
# .ci/run, so that there is one installer:
#
#   . scripts/bootstrap.sh deno bun redis openssl
#
# Each name is installed only when missing, and says what it installs and
# where:
#   deno, bun  the pinned versions, from the npm registry (their binaries come
#              inside the packages), into $RESPITE_TOOLS
#              (default ~/.cache/respite-tools); npm itself from the
#              distribution if there is none
#   redis      redis-server from the distribution (apt-get), at least 7.0
#   openssl    from the distribution (the TLS tests make certificates)
#   npm        from the distribution (scripts/install_test_runtimes.sh)
#
# Safe to run again: a tool that is there at the right version is left alone.
# A failure ends with one line saying what to install by hand, and the
# source returns 1 (a script with `set -e` stops; an interactive shell stays).

RESPITE_DENO_VERSION=2.9.6
RESPITE_BUN_VERSION=1.4.4
RESPITE_REDIS_MIN=7.0
RESPITE_TOOLS="${RESPITE_TOOLS:-${HOME:-}/.cache/respite-tools}"

_respite_say() { printf 'respite: %s\n' "$*" >&2; }

# One clear line, then stop: the work runs in a subshell (see the end), so
# this ends that subshell and the source returns 1.
_respite_fail() {
  _respite_say "ERROR: $*"
  exit 1
}

# The version as a whole word: 1.4.41 is not 1.4.4.
_respite_has_version() {
  command -v "$1" >/dev/null 2>&1 &&
    "$1" --version 2>/dev/null | head -n 1 | tr -s ' ()' '\n' | grep -qxF "$2"
}

_respite_apt_updated=""
_respite_apt_install() {
  local what="$1"
  shift
  if [ "$(uname -s)" != "Linux" ] || ! command -v apt-get >/dev/null 2>&1; then
    _respite_fail "$what is missing and this is not a Debian/Ubuntu machine with apt-get; install $what by hand (see the README's prerequisites), then run this again"
  fi
  local sudo=""
  if [ "$(id -u)" != "0" ]; then
    command -v sudo >/dev/null 2>&1 || _respite_fail "$what is missing; installing it needs root (apt-get install -y $*): run as root or install it by hand"
    sudo="sudo"
  fi
  if [ -z "$_respite_apt_updated" ]; then
    _respite_say "apt-get update (to install $*)"
    $sudo apt-get update >&2 || _respite_fail "apt-get update failed (no network?); install $* by hand, then run this again"
    _respite_apt_updated=1
  fi
  _respite_say "installing $* from the distribution (apt-get)"
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y "$@" >&2 ||
    _respite_fail "apt-get install $* failed; install $what by hand, then run this again"
}

_respite_npm_tools() {
  # Deno and/or Bun, pinned, from the npm registry into $RESPITE_TOOLS.
  local pkgs=("$@")
  if ! command -v npm >/dev/null 2>&1; then
    _respite_apt_install "npm (to fetch ${pkgs[*]} from the npm registry)" nodejs npm
  fi
  mkdir -p "$RESPITE_TOOLS" 2>/dev/null || _respite_fail "cannot create $RESPITE_TOOLS; set RESPITE_TOOLS to a writable folder"
  if [ ! -f "$RESPITE_TOOLS/package.json" ]; then
    { echo '{"name":"respite-tools","private":true}' >"$RESPITE_TOOLS/package.json"; } 2>/dev/null ||
      _respite_fail "cannot write in $RESPITE_TOOLS; set RESPITE_TOOLS to a writable folder"
  fi
  _respite_say "installing ${pkgs[*]} from the npm registry into $RESPITE_TOOLS/node_modules/.bin"
  npm install --prefix "$RESPITE_TOOLS" --no-audit --no-fund --loglevel=error "${pkgs[@]}" >&2 ||
    _respite_fail "npm install ${pkgs[*]} failed (no network?); install Deno $RESPITE_DENO_VERSION and Bun $RESPITE_BUN_VERSION by hand, then run this again"
  # The packages' own install scripts put the binaries in place; run them
  # again in case this npm skipped install scripts.
  if [ -d "$RESPITE_TOOLS/node_modules/deno" ] && ! "$RESPITE_TOOLS/node_modules/.bin/deno" --version >/dev/null 2>&1; then
    (cd "$RESPITE_TOOLS/node_modules/deno" && node ./install.cjs) >&2 || true
  fi
  if [ -d "$RESPITE_TOOLS/node_modules/bun" ] && ! "$RESPITE_TOOLS/node_modules/.bin/bun" --version >/dev/null 2>&1; then
    (cd "$RESPITE_TOOLS/node_modules/bun" && node ./install.js) >&2 || true
  fi
}

_respite_bootstrap() {
  [ -n "${HOME:-}" ] || [ -n "${RESPITE_TOOLS:-}" ] ||
    _respite_fail "neither HOME nor RESPITE_TOOLS is set: set RESPITE_TOOLS to a folder for the tools"
  if [ -x "$RESPITE_TOOLS/node_modules/.bin/deno" ] || [ -x "$RESPITE_TOOLS/node_modules/.bin/bun" ]; then
    export PATH="$RESPITE_TOOLS/node_modules/.bin:$PATH"
  fi
  local want npm_pkgs=()
  for want in "$@"; do
    case "$want" in
      deno) _respite_has_version deno "$RESPITE_DENO_VERSION" || npm_pkgs+=("deno@$RESPITE_DENO_VERSION") ;;
      bun) _respite_has_version bun "$RESPITE_BUN_VERSION" || npm_pkgs+=("bun@$RESPITE_BUN_VERSION") ;;
    esac
  done
  if [ ${#npm_pkgs[@]} -gt 0 ]; then
    _respite_npm_tools "${npm_pkgs[@]}"
    export PATH="$RESPITE_TOOLS/node_modules/.bin:$PATH"
  fi
  for want in "$@"; do
    case "$want" in
      deno) _respite_has_version deno "$RESPITE_DENO_VERSION" || _respite_fail "Deno $RESPITE_DENO_VERSION is still missing after the install; install it by hand (npm install -g deno@$RESPITE_DENO_VERSION)" ;;
      bun) _respite_has_version bun "$RESPITE_BUN_VERSION" || _respite_fail "Bun $RESPITE_BUN_VERSION is still missing after the install; install it by hand (npm install -g bun@$RESPITE_BUN_VERSION)" ;;
      redis)
        command -v redis-server >/dev/null 2>&1 || _respite_apt_install redis-server redis-server
        local v
        v="$(redis-server --version 2>/dev/null | sed -n 's/.*v=\([0-9][0-9]*\.[0-9][0-9]*\).*/\1/p')"
        [ -n "$v" ] || _respite_fail "redis-server is on PATH but does not say its version; install Redis $RESPITE_REDIS_MIN or newer by hand"
        if [ "$(printf '%s\n%s\n' "$RESPITE_REDIS_MIN" "$v" | sort -V | head -n 1)" != "$RESPITE_REDIS_MIN" ]; then
          _respite_fail "redis-server $v is too old: respite's demo and tests need Redis $RESPITE_REDIS_MIN or newer (this distribution's package is older); install a newer Redis by hand, or set REDIS_URL to one"
        fi
        ;;
      openssl) command -v openssl >/dev/null 2>&1 || _respite_apt_install openssl openssl ;;
      npm) command -v npm >/dev/null 2>&1 || _respite_apt_install npm nodejs npm ;;
      deno | bun) ;;
      *) _respite_fail "bootstrap.sh: unknown tool '$want'" ;;
    esac
  done
}

# The installs and checks run in a subshell, so that a failure (exit) ends
# only it; this shell then gets the tools folder on PATH, or returns 1.
if (_respite_bootstrap "$@"); then
  if [ -d "$RESPITE_TOOLS/node_modules/.bin" ]; then
    export PATH="$RESPITE_TOOLS/node_modules/.bin:$PATH"
  fi
else
  return 1 2>/dev/null || exit 1
fi
