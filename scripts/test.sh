#!/usr/bin/env bash
# The whole test suite: starts (or installs) the servers the adapter tests need, then runs every
# test of the workspace against them. Extra arguments choose a subset: they go to the test runner
# (cargo nextest, or `cargo test` where nextest is missing).
#
# Each file in scripts/servers/ provides one server: it exports the URL the tests read
# (NARVIK_TEST_<STORE>_URL) unless the caller already set it, and registers a cleanup for
# whatever it started. Under CI=true a server that cannot be provided fails the run.
set -euo pipefail
cd "$(dirname "$0")/.."

export NARVIK_BUILD_DIR="${NARVIK_BUILD_DIR:-$PWD/.build}"
mkdir -p "$NARVIK_BUILD_DIR"

NARVIK_CLEANUPS=()
narvik_on_exit() {
  local status=$?
  local cleanup
  for cleanup in "${NARVIK_CLEANUPS[@]+"${NARVIK_CLEANUPS[@]}"}"; do
    eval "$cleanup" || true
  done
  exit "$status"
}
trap narvik_on_exit EXIT

# A server that cannot be provided: fatal under CI, a loud warning otherwise (the tests that need
# it will then fail with the same message).
narvik_missing_server() {
  echo "scripts/test.sh: $1" >&2
  if [ "${CI:-}" = "true" ]; then
    exit 1
  fi
}

for server in scripts/servers/*.sh; do
  [ -e "$server" ] || continue
  # shellcheck source=/dev/null
  source "$server"
done

# With cargo-nextest (on every machine of this project's kind), every test binary runs at once
# and the stores' suites overlap: most cases wait on a server, not on a core. Two passes follow:
# the Mongo change-stream and 16 MiB document tests, one at a time (a change stream makes
# SecantusDB scan its oplog under its global lock on every write, and under the main pass's load
# that has wedged it), and
# the Redis TTL audit, which checks every key the other tests left. Doc tests are cargo's own.
# Without nextest, plain `cargo test` runs the same tests one binary after another.
if cargo nextest --version >/dev/null 2>&1; then
  threads="${NARVIK_TEST_THREADS:-8}"
  if [ "$#" -gt 0 ]; then
    # A chosen subset (for example `-E 'test(delete_expired)'`): nextest alone, with those
    # arguments. Not `exec`: the exit trap must still stop the servers started above.
    status=0
    cargo nextest run --workspace --all-features --no-fail-fast --test-threads "$threads" "$@" ||
      status=$?
    exit "$status"
  fi
  status=0
  # Alone too: the Mongo tests that send documents of about 16 MiB. SecantusDB holds its
  # storage lock while it handles one, and once, beside the 10,000-operation stress case, an
  # instance answered nothing for over a minute.
  mongo_alone='package(narvik-mongo) & (binary(invalidation) | binary(near_cache) | binary(conformance_near_cache) | (binary(mongo) & test(/16_mib/)))'
  cargo nextest run --workspace --all-features --no-fail-fast --test-threads "$threads" \
    -E "not binary(ttl_audit) & not ($mongo_alone)" || status=$?
  cargo nextest run --workspace --all-features --no-fail-fast --test-threads 1 \
    -E "$mongo_alone" || status=$?
  cargo nextest run --workspace --all-features --no-fail-fast -E 'binary(ttl_audit)' ||
    status=$?
  cargo test --workspace --all-features --doc || status=$?
  exit "$status"
fi
cargo test --workspace --all-features --no-fail-fast "$@"
