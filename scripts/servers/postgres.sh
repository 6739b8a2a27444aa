# shellcheck shell=bash
# PostgreSQL for narvik-postgres's tests. Sourced by scripts/test.sh (set -euo pipefail is on).
#
# NARVIK_TEST_POSTGRES_URL already set: nothing to do. Otherwise it uses the local server at
# 127.0.0.1:5432: running -> used as is; installed but stopped -> started with pg_ctlcluster
# (and stopped again at exit); missing on a Debian machine -> installed with apt-get (as root or
# through passwordless sudo), started, and given trust auth on 127.0.0.1 and a database `test`.
# A server it did not install is never reconfigured: it only creates the `test` database there.
# Exports:
#   NARVIK_TEST_POSTGRES_URL  postgres://postgres@127.0.0.1:5432/test

NARVIK_POSTGRES_HOST=127.0.0.1
NARVIK_POSTGRES_PORT=5432

narvik_postgres_sudo() {
  if [ "$(id -u)" = "0" ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

narvik_postgres_ready() {
  pg_isready -q -h "$NARVIK_POSTGRES_HOST" -p "$NARVIK_POSTGRES_PORT" -t 3 2>/dev/null
}

# psql as the superuser over TCP, the way the tests connect.
narvik_postgres_psql() {
  PGCONNECT_TIMEOUT=5 psql -X -q -v ON_ERROR_STOP=1 -h "$NARVIK_POSTGRES_HOST" \
    -p "$NARVIK_POSTGRES_PORT" -U postgres "$@"
}

# The first cluster listening on our port, as "VERSION NAME", from pg_lsclusters.
narvik_postgres_cluster() {
  pg_lsclusters --no-header 2>/dev/null |
    awk -v port="$NARVIK_POSTGRES_PORT" '$3 == port { print $1, $2; exit }'
}

narvik_postgres_install() {
  command -v apt-get >/dev/null || return 1
  echo "scripts/servers/postgres.sh: installing postgresql with apt-get (a minute or two)" >&2
  narvik_postgres_sudo apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive narvik_postgres_sudo \
      apt-get install -y -qq --no-install-recommends postgresql >&2
}

# Only on a server this script installed: let the tests in without a password, on loopback.
narvik_postgres_trust_loopback() {
  local version name hba
  read -r version name <<<"$(narvik_postgres_cluster)"
  hba="/etc/postgresql/$version/$name/pg_hba.conf"
  [ -f "$hba" ] || return 1
  narvik_postgres_sudo sed -i \
    '1i host all postgres 127.0.0.1/32 trust  # added by narvik scripts/servers/postgres.sh' "$hba" &&
    narvik_postgres_sudo pg_ctlcluster --skip-systemctl-redirect "$version" "$name" reload
}

narvik_postgres_start_cluster() {
  local version name
  read -r version name <<<"$(narvik_postgres_cluster)"
  [ -n "${version:-}" ] || return 1
  echo "scripts/servers/postgres.sh: starting cluster $version/$name" >&2
  narvik_postgres_sudo pg_ctlcluster --skip-systemctl-redirect "$version" "$name" start >&2 ||
    return 1
  NARVIK_CLEANUPS+=("narvik_postgres_sudo pg_ctlcluster --skip-systemctl-redirect $version $name stop")
  local tries=0
  until narvik_postgres_ready; do
    tries=$((tries + 1))
    [ "$tries" -lt 30 ] || return 1
    sleep 1
  done
}

narvik_postgres_setup() {
  local installed_here=false
  if ! narvik_postgres_ready; then
    if [ -z "$(narvik_postgres_cluster)" ]; then
      if ! command -v pg_lsclusters >/dev/null; then
        if ! narvik_postgres_install; then
          narvik_missing_server "PostgreSQL is not running on $NARVIK_POSTGRES_HOST:$NARVIK_POSTGRES_PORT \
and cannot be installed here (needs apt-get as root or passwordless sudo); \
set NARVIK_TEST_POSTGRES_URL=postgres://USER@HOST:PORT/DB"
          return 0
        fi
        installed_here=true
      fi
    fi
    # The package's own start may have worked already (systemd); otherwise start it ourselves.
    if ! narvik_postgres_ready && ! narvik_postgres_start_cluster; then
      narvik_missing_server "PostgreSQL is installed but could not be started on \
$NARVIK_POSTGRES_HOST:$NARVIK_POSTGRES_PORT (see pg_lsclusters and its log); \
or set NARVIK_TEST_POSTGRES_URL"
      return 0
    fi
  fi

  if ! narvik_postgres_psql -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
    if ! $installed_here || ! narvik_postgres_trust_loopback ||
      ! narvik_postgres_psql -d postgres -c 'SELECT 1' >/dev/null 2>&1; then
      narvik_missing_server "PostgreSQL on $NARVIK_POSTGRES_HOST:$NARVIK_POSTGRES_PORT does not let \
user postgres in without a password; set NARVIK_TEST_POSTGRES_URL=postgres://USER:PASSWORD@HOST:PORT/DB"
      return 0
    fi
  fi

  if [ "$(narvik_postgres_psql -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'")" != "1" ]; then
    if ! narvik_postgres_psql -d postgres -c 'CREATE DATABASE test' >/dev/null; then
      narvik_missing_server "could not create database test on $NARVIK_POSTGRES_HOST:$NARVIK_POSTGRES_PORT; \
set NARVIK_TEST_POSTGRES_URL"
      return 0
    fi
  fi
  export NARVIK_TEST_POSTGRES_URL="postgres://postgres@$NARVIK_POSTGRES_HOST:$NARVIK_POSTGRES_PORT/test"
}

if [ -z "${NARVIK_TEST_POSTGRES_URL:-}" ]; then
  narvik_postgres_setup
fi
