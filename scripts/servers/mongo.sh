# shellcheck shell=bash
# MongoDB for narvik-mongo's tests. Sourced by scripts/test.sh (set -euo pipefail is on).
#
# NARVIK_TEST_MONGO_URL already set: nothing to do. Otherwise no mongod can be installed on the
# machines this runs on, so it installs SecantusDB (a MongoDB wire-protocol server on
# WiredTiger, from PyPI) into a virtualenv under $NARVIK_BUILD_DIR/mongo-venv (quick when already
# there), starts it on a free loopback port with fresh storage in $NARVIK_BUILD_DIR/mongo-data,
# and stops it by PID at exit. Exports:
#   NARVIK_TEST_MONGO_URL         mongodb://127.0.0.1:PORT
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

  local port
  port="$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  local data="$NARVIK_BUILD_DIR/mongo-data"
  local config="$NARVIK_BUILD_DIR/mongo-empty.conf"
  local log="$NARVIK_BUILD_DIR/mongo.log"
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
      return 0
    fi
    sleep 0.1
  done

  export NARVIK_TEST_MONGO_URL="mongodb://127.0.0.1:$port"
  export NARVIK_TEST_MONGO_SERVER_BIN="$bin"
  echo "scripts/servers/mongo.sh: SecantusDB (pid $pid) at $NARVIK_TEST_MONGO_URL" >&2
}

if [ -z "${NARVIK_TEST_MONGO_URL:-}" ]; then
  narvik_mongo_start
fi
