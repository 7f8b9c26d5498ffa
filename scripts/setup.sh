#!/usr/bin/env bash
# Installs what hsm-kms needs on this machine, and nothing when it is all there:
#   - Node.js >= 20 (checked, not installed);
#   - system packages via apt-get when running as root (otherwise it lists them and exits 1):
#       softhsm2      always (the token);
#       redis-server  for the tests, and for the quickstart unless REDIS_URL is set (its private Redis);
#       opensc        for the tests only (they inspect token objects with pkcs11-tool; nothing
#                     at run time calls it);
#       chromium      for the tests only (the /console browser test, with fonts-liberation);
#     `setup.sh --for quickstart` asks only for what the quickstart's configuration needs;
#     `setup.sh` (or `--for test`) for everything the test suite needs;
#   - node_modules with the pkcs11js native addon built (npm ci; package.json's allowScripts
#     approves pkcs11js's build script). A C++ toolchain is installed too if that build needs one.
# Idempotent and silent when nothing is missing. Used by scripts/test.sh and scripts/quickstart.sh.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

purpose=test
case "${1:-}:${2:-}" in
  --for:quickstart) purpose=quickstart ;;
  --for:test | :) purpose=test ;;
  *) printf 'usage: scripts/setup.sh [--for quickstart|test]\n' >&2; exit 2 ;;
esac

say() { printf 'setup: %s\n' "$*" >&2; }
die() { say "$*"; exit 1; }

# --- Node.js ---------------------------------------------------------------------------------
command -v node >/dev/null 2>&1 || die "Node.js is not installed; install Node.js 20 or newer (https://nodejs.org/)."
node_major="$(node -p 'process.versions.node.split(".")[0]')"
if [ "${node_major}" -lt 20 ]; then
  die "Node.js $(node --version) is too old; hsm-kms needs Node.js 20 or newer."
fi
command -v npm >/dev/null 2>&1 || die "npm is not installed; it ships with Node.js 20+."

# --- System packages -------------------------------------------------------------------------
missing=()
command -v softhsm2-util >/dev/null 2>&1 || missing+=(softhsm2)
if [ "${purpose}" = test ] || [ -z "${REDIS_URL:-}" ]; then
  command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
fi
if [ "${purpose}" = test ]; then
  command -v pkcs11-tool >/dev/null 2>&1 || missing+=(opensc)
  # The console's browser test drives Debian's chromium (playwright-core downloads no browser);
  # fonts-liberation (a recommend, skipped below) gives its screenshot legible text.
  command -v chromium >/dev/null 2>&1 || missing+=(chromium fonts-liberation)
fi

need_npm_ci=0
if [ ! -d node_modules ] || [ ! -f node_modules/pkcs11js/build/Release/pkcs11.node ]; then
  need_npm_ci=1
  # pkcs11js is compiled by node-gyp at install time: it needs python3, make and a C++ compiler.
  command -v python3 >/dev/null 2>&1 || missing+=(python3)
  command -v make    >/dev/null 2>&1 || missing+=(make)
  command -v g++     >/dev/null 2>&1 || missing+=(g++)
fi

if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    say "installing ${missing[*]} with apt-get"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >/dev/null
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  else
    say "missing system packages: ${missing[*]}"
    say "install them first, e.g.: sudo apt-get install -y ${missing[*]}"
    say "(or run this script as root on Debian/Ubuntu and it will install them)"
    exit 1
  fi
fi

# --- node_modules ----------------------------------------------------------------------------
if [ "${need_npm_ci}" -eq 1 ]; then
  say "installing node_modules (npm ci)"
  ci_log="$(mktemp)"
  if ! npm ci --no-audit --no-fund --loglevel=error >"${ci_log}" 2>&1; then
    if grep -q 'can only install packages when your package.json and package-lock.json' "${ci_log}"; then
      # A registry mirror that does not serve some platform-specific optional packages (e.g.
      # @rollup/rollup-darwin-*) yields a lockfile without them, which npm ci calls "out of sync".
      # npm install keeps every locked version and skips the unavailable optional ones;
      # --no-save leaves package-lock.json untouched.
      say "npm ci refused the lockfile (optional platform packages missing from it); using npm install --no-save"
      npm install --no-save --no-audit --no-fund --loglevel=error >&2
    else
      cat "${ci_log}" >&2
      rm -f "${ci_log}"
      die "npm ci failed"
    fi
  fi
  rm -f "${ci_log}"
  if [ ! -f node_modules/pkcs11js/build/Release/pkcs11.node ]; then
    # An npm that ignored allowScripts (or --ignore-scripts in npmrc) leaves the addon unbuilt.
    say "pkcs11js native addon missing after npm ci; building it"
    npm rebuild pkcs11js --foreground-scripts --loglevel=error >&2
  fi
  [ -f node_modules/pkcs11js/build/Release/pkcs11.node ] \
    || die "pkcs11js did not build (node_modules/pkcs11js/build/Release/pkcs11.node is missing); see the npm output above."
fi
