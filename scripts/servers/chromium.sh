# shellcheck shell=bash
# Chromium and chromedriver for narvik-demo's browser test. Sourced by scripts/test.sh
# (set -euo pipefail is on).
#
# NARVIK_TEST_CHROMEDRIVER already set: nothing to do. Otherwise it finds Debian's `chromium`
# and `chromedriver` (package `chromium-driver`), installing both with apt-get when missing
# (as root, or through passwordless sudo). Nothing is started here: the test starts its own
# chromedriver on a free port and one Chromium per browser profile, and stops them itself.
# Exports:
#   NARVIK_TEST_CHROMEDRIVER  path of chromedriver
#   NARVIK_TEST_CHROMIUM      path of the Chromium binary chromedriver should launch

narvik_chromium_find() {
  NARVIK_CHROMEDRIVER_FOUND="$(command -v chromedriver || true)"
  NARVIK_CHROMIUM_FOUND="$(command -v chromium || command -v chromium-browser || true)"
}

narvik_chromium_install() {
  local sudo=()
  if [ "$(id -u)" != "0" ]; then
    if command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      return 1
    fi
  fi
  command -v apt-get >/dev/null || return 1
  echo "scripts/servers/chromium.sh: installing chromium and chromium-driver with apt-get (a few minutes)" >&2
  "${sudo[@]+"${sudo[@]}"}" apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive "${sudo[@]+"${sudo[@]}"}" \
      apt-get install -y -qq --no-install-recommends chromium chromium-driver >&2
}

narvik_chromium_setup() {
  narvik_chromium_find
  if [ -z "$NARVIK_CHROMEDRIVER_FOUND" ] || [ -z "$NARVIK_CHROMIUM_FOUND" ]; then
    if ! narvik_chromium_install; then
      narvik_missing_server "chromium/chromedriver are missing and cannot be installed here \
(needs apt-get as root or passwordless sudo); install Debian's chromium and chromium-driver, \
or set NARVIK_TEST_CHROMEDRIVER and NARVIK_TEST_CHROMIUM"
      return 0
    fi
    narvik_chromium_find
    if [ -z "$NARVIK_CHROMEDRIVER_FOUND" ] || [ -z "$NARVIK_CHROMIUM_FOUND" ]; then
      narvik_missing_server "apt-get ran but chromium/chromedriver are still not on PATH; \
set NARVIK_TEST_CHROMEDRIVER and NARVIK_TEST_CHROMIUM"
      return 0
    fi
  fi
  export NARVIK_TEST_CHROMEDRIVER="$NARVIK_CHROMEDRIVER_FOUND"
  export NARVIK_TEST_CHROMIUM="${NARVIK_TEST_CHROMIUM:-$NARVIK_CHROMIUM_FOUND}"
}

if [ -z "${NARVIK_TEST_CHROMEDRIVER:-}" ]; then
  narvik_chromium_setup
fi
