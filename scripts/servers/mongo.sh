# shellcheck shell=bash
# MongoDB for narvik-mongo's tests. Sourced by scripts/test.sh (set -euo pipefail is on).
#
# NARVIK_TEST_MONGO_URL already set: nothing to do. Otherwise no mongod can be installed on the
# machines this runs on, so it installs SecantusDB (a MongoDB wire-protocol server on
# WiredTiger, from PyPI) into a virtualenv under $NARVIK_BUILD_DIR/mongo-venv (quick when already
# there), starts NARVIK_TEST_MONGO_INSTANCES (default 2) of it on free loopback ports with fresh
# storage in $NARVIK_BUILD_DIR/mongo-data-N, and stops them by PID at exit. Exports:
#   NARVIK_TEST_MONGO_URL         mongodb://127.0.0.1:PORT (the first instance)
#   NARVIK_TEST_MONGO_URLS        every instance, comma-separated; the tests put each fresh
#                                 collection on one of them at random
#   NARVIK_TEST_MONGO_SERVER_BIN  the secantusd-py binary; narvik-mongo's restart test starts
#                                 its own instance of it on its own port and storage path.

NARVIK_MONGO_SECANTUS_VERSION="0.7.0b3"

narvik_mongo_start() {
  local venv="$NARVIK_BUILD_DIR/mongo-venv"
  local bin="$venv/bin/secantusd-py"
  local stamp="$venv/.secantusdb-$NARVIK_MONGO_SECANTUS_VERSION"
  if [ ! -x "$bin" ] || [ ! -e "$stamp" ]; then
    echo "scripts/servers/mongo.sh: installing SecantusDB $NARVIK_MONGO_SECANTUS_VERSION into $venv" >&2
    if ! { python3 -m venv "$venv" &&
      "$venv/bin/pip" install --quiet --disable-pip-version-check --pre \
        "SecantusDB==$NARVIK_MONGO_SECANTUS_VERSION" &&
      touch "$stamp"; }; then
      narvik_missing_server "cannot install SecantusDB (needs python3 with venv and PyPI access); \
set NARVIK_TEST_MONGO_URL=mongodb://HOST:PORT to use another MongoDB"
      return 0
    fi
  fi

  # SecantusDB is a single-threaded Python server: the conformance suite's big cases keep one
  # instance's core busy while the other core idles, so the tests spread their collections over
  # several instances (NARVIK_TEST_MONGO_INSTANCES, default 2).
  local count="${NARVIK_TEST_MONGO_INSTANCES:-2}"
  local urls=()
  local n
  for ((n = 0; n < count; n++)); do
    narvik_mongo_start_instance "$bin" "$n" || return 0
    urls+=("$NARVIK_MONGO_STARTED_URL")
  done

  export NARVIK_TEST_MONGO_URL="${urls[0]}"
  NARVIK_TEST_MONGO_URLS="$(IFS=,; echo "${urls[*]}")"
  export NARVIK_TEST_MONGO_URLS
  export NARVIK_TEST_MONGO_SERVER_BIN="$bin"
}

# Starts instance N of SecantusDB on a free port with fresh storage; sets
# NARVIK_MONGO_STARTED_URL. Returns non-zero (after reporting) when it does not start.
narvik_mongo_start_instance() { # bin n
  local bin="$1" n="$2"
  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  local data="$NARVIK_BUILD_DIR/mongo-data-$n"
  local config="$NARVIK_BUILD_DIR/mongo-empty.conf"
  local log="$NARVIK_BUILD_DIR/mongo-$n.log"
  rm -rf "$data"
  mkdir -p "$data"
  # An explicit empty config stops SecantusDB from reading stray config files.
  : >"$config"
  "$bin" --config "$config" --host 127.0.0.1 --port "$port" --storage-path "$data" \
    --cache-size 64M >"$log" 2>&1 &
  local pid=$!
  # SIGTERM stops it in about 4 s; wait so that the next run's rm -rf finds it gone.
  NARVIK_CLEANUPS+=("kill $pid 2>/dev/null; wait $pid 2>/dev/null")

  local tries=0
  until (: </dev/tcp/127.0.0.1/"$port") 2>/dev/null; do
    tries=$((tries + 1))
    if ! kill -0 "$pid" 2>/dev/null || [ "$tries" -ge 200 ]; then
      echo "scripts/servers/mongo.sh: SecantusDB did not start on port $port; its log:" >&2
      tail -n 20 "$log" >&2 || true
      narvik_missing_server "SecantusDB did not start; set NARVIK_TEST_MONGO_URL=mongodb://HOST:PORT \
to use another MongoDB"
      return 1
    fi
    sleep 0.1
  done
  NARVIK_MONGO_STARTED_URL="mongodb://127.0.0.1:$port"
  echo "scripts/servers/mongo.sh: SecantusDB (pid $pid) at $NARVIK_MONGO_STARTED_URL" >&2
}

if [ -z "${NARVIK_TEST_MONGO_URL:-}" ]; then
  narvik_mongo_start
fi
