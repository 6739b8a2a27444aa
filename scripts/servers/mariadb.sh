# shellcheck shell=bash
# MariaDB (or MySQL) for narvik-mysql's tests. Sourced by scripts/test.sh (set -euo pipefail is
# on).
#
# NARVIK_TEST_MYSQL_URL already set: nothing to do. Otherwise it uses the local server at
# 127.0.0.1:3306: answering -> used as is; installed but stopped -> started (and stopped again at
# exit if started here); missing on a Debian machine -> mariadb-server installed with apt-get (as
# root or through passwordless sudo), then started. The tests connect as root with an empty
# password over TCP and use the database `test`, created when missing. A server this script did
# not install is never reconfigured. The fault tests (tests/faults.rs) start servers of their
# own from the same binaries.
# Exports:
#   NARVIK_TEST_MYSQL_URL  mysql://root@127.0.0.1:3306/test

NARVIK_MYSQL_HOST=127.0.0.1
NARVIK_MYSQL_PORT=3306

narvik_mysql_sudo() {
  if [ "$(id -u)" = "0" ]; then
    "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    return 1
  fi
}

# The client binary: mariadb, else mysql.
narvik_mysql_client() {
  if command -v mariadb >/dev/null; then
    echo mariadb
  elif command -v mysql >/dev/null; then
    echo mysql
  else
    return 1
  fi
}

# A statement as root over TCP, the way the tests connect.
narvik_mysql_sql() {
  local client
  client=$(narvik_mysql_client) || return 1
  "$client" --no-defaults --protocol=tcp -h "$NARVIK_MYSQL_HOST" -P "$NARVIK_MYSQL_PORT" \
    -u root --connect-timeout=3 -N -B -e "$1" 2>/dev/null
}

narvik_mysql_ready() {
  narvik_mysql_sql 'SELECT 1' >/dev/null
}

# The server answers the protocol at all (a refused login still means it is running).
narvik_mysql_running() {
  local admin
  admin=$(command -v mariadb-admin || command -v mysqladmin) || return 1
  "$admin" --no-defaults --protocol=tcp -h "$NARVIK_MYSQL_HOST" -P "$NARVIK_MYSQL_PORT" \
    -u root --connect-timeout=3 ping >/dev/null 2>&1
}

narvik_mysql_server_binary() {
  command -v mariadbd || command -v mysqld || { [ -x /usr/sbin/mariadbd ] && echo /usr/sbin/mariadbd; } ||
    { [ -x /usr/sbin/mysqld ] && echo /usr/sbin/mysqld; }
}

narvik_mysql_install() {
  command -v apt-get >/dev/null || return 1
  echo "scripts/servers/mariadb.sh: installing mariadb-server with apt-get (a minute or two)" >&2
  narvik_mysql_sudo apt-get update -qq >&2 &&
    DEBIAN_FRONTEND=noninteractive narvik_mysql_sudo \
      apt-get install -y -qq --no-install-recommends mariadb-server mariadb-client >&2
}

# Starts the installed server: the service script where there is one, else mariadbd itself in the
# background on the package's data directory (containers without an init system).
narvik_mysql_start() {
  echo "scripts/servers/mariadb.sh: starting the local MariaDB" >&2
  if command -v service >/dev/null && narvik_mysql_sudo service mariadb start >&2 2>&1; then
    NARVIK_CLEANUPS+=("narvik_mysql_sudo service mariadb stop >/dev/null 2>&1")
  else
    local server
    server=$(narvik_mysql_server_binary) || return 1
    narvik_mysql_sudo mkdir -p /run/mysqld &&
      narvik_mysql_sudo chown mysql:mysql /run/mysqld || return 1
    narvik_mysql_sudo "$server" --user=mysql --bind-address="$NARVIK_MYSQL_HOST" \
      --port="$NARVIK_MYSQL_PORT" --pid-file=/run/mysqld/narvik-test.pid \
      >"$NARVIK_BUILD_DIR/mariadb.log" 2>&1 &
    NARVIK_CLEANUPS+=("narvik_mysql_sudo kill \$(cat /run/mysqld/narvik-test.pid) >/dev/null 2>&1")
  fi
  local tries=0
  until narvik_mysql_running; do
    tries=$((tries + 1))
    [ "$tries" -lt 60 ] || return 1
    sleep 0.5
  done
}

narvik_mysql_setup() {
  local installed_here=false
  if ! narvik_mysql_running; then
    if [ -z "$(narvik_mysql_server_binary)" ]; then
      if ! narvik_mysql_install; then
        narvik_missing_server "MariaDB is not running on $NARVIK_MYSQL_HOST:$NARVIK_MYSQL_PORT \
and cannot be installed here (needs apt-get as root or passwordless sudo); \
set NARVIK_TEST_MYSQL_URL=mysql://USER@HOST:PORT/DB"
        return 0
      fi
      installed_here=true
    fi
    # The package's own start may have worked already; otherwise start it ourselves.
    if ! narvik_mysql_running && ! narvik_mysql_start; then
      narvik_missing_server "MariaDB is installed but could not be started on \
$NARVIK_MYSQL_HOST:$NARVIK_MYSQL_PORT (see $NARVIK_BUILD_DIR/mariadb.log); or set NARVIK_TEST_MYSQL_URL"
      return 0
    fi
  fi

  if ! narvik_mysql_ready; then
    # Only on a server installed here: the Debian package gives root unix-socket login; let root
    # in over TCP from loopback without a password, as the tests connect.
    local client
    if ! $installed_here || ! client=$(narvik_mysql_client) ||
      ! narvik_mysql_sudo "$client" -u root -e \
        "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1'; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION" ||
      ! narvik_mysql_ready; then
      narvik_missing_server "MariaDB on $NARVIK_MYSQL_HOST:$NARVIK_MYSQL_PORT does not let root in \
without a password; set NARVIK_TEST_MYSQL_URL=mysql://USER:PASSWORD@HOST:PORT/DB"
      return 0
    fi
  fi

  if ! narvik_mysql_sql 'CREATE DATABASE IF NOT EXISTS test' >/dev/null; then
    narvik_missing_server "could not create database test on $NARVIK_MYSQL_HOST:$NARVIK_MYSQL_PORT; \
set NARVIK_TEST_MYSQL_URL"
    return 0
  fi
  export NARVIK_TEST_MYSQL_URL="mysql://root@$NARVIK_MYSQL_HOST:$NARVIK_MYSQL_PORT/test"
}

if [ -z "${NARVIK_TEST_MYSQL_URL:-}" ]; then
  narvik_mysql_setup
fi
