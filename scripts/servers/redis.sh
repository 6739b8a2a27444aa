# Sourced by scripts/test.sh: provides Redis for narvik-redis's tests.
#   NARVIK_TEST_REDIS_URL           one server (default: the local one at 127.0.0.1:6379,
#                                   started, or installed with apt-get, when missing)
#   NARVIK_TEST_REDIS_CLUSTER_URLS  comma-separated node URLs of a Redis Cluster (default: a
#                                   3-master cluster started here on free loopback ports and
#                                   stopped on exit)

narvik_redis_ping() { # host port
  redis-cli -h "$1" -p "$2" ping 2>/dev/null | grep -q PONG
}

narvik_redis_install() {
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null && return 0
  if command -v apt-get >/dev/null && [ "$(id -u)" = 0 ]; then
    echo "scripts/servers/redis.sh: installing redis-server with apt-get" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null ||
      { apt-get update -q >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server >/dev/null; }
  fi
  command -v redis-server >/dev/null && command -v redis-cli >/dev/null
}

narvik_redis_free_port() { # a loopback port whose cluster bus port (+10000) is free too
  python3 - "$@" <<'PY'
import random, socket, sys
taken = set(int(p) for p in sys.argv[1:])
def free(port):
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False
while True:
    port = random.randint(20000, 45000)
    if {port, port + 10000} & taken:
        continue
    if free(port) and free(port + 10000):
        print(port)
        break
PY
}

narvik_redis_single() {
  if [ -n "${NARVIK_TEST_REDIS_URL:-}" ]; then
    return 0
  fi
  if ! narvik_redis_ping 127.0.0.1 6379; then
    if ! narvik_redis_install; then
      narvik_missing_server "no Redis at 127.0.0.1:6379 and redis-server cannot be installed; set NARVIK_TEST_REDIS_URL"
      return 0
    fi
    mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
    redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
      --dir /var/lib/redis --logfile /var/log/redis/ci.log >/dev/null
    local tries=0
    until narvik_redis_ping 127.0.0.1 6379; do
      tries=$((tries + 1))
      if [ "$tries" -ge 50 ]; then
        narvik_missing_server "redis-server did not start on 127.0.0.1:6379 (see /var/log/redis/ci.log); set NARVIK_TEST_REDIS_URL"
        return 0
      fi
      sleep 0.1
    done
    # Started here, so stopped here; a server that was already running is left alone.
    NARVIK_CLEANUPS+=("redis-cli -p 6379 shutdown nosave >/dev/null 2>&1")
  fi
  export NARVIK_TEST_REDIS_URL="redis://127.0.0.1:6379"
}

narvik_redis_cluster() {
  if [ -n "${NARVIK_TEST_REDIS_CLUSTER_URLS:-}" ]; then
    return 0
  fi
  if ! narvik_redis_install; then
    narvik_missing_server "redis-server is missing, so no local Redis Cluster; set NARVIK_TEST_REDIS_CLUSTER_URLS"
    return 0
  fi
  local root="$NARVIK_BUILD_DIR/redis-cluster"
  local ports=() urls=() nodes=() port dir
  rm -rf "$root"
  for _ in 1 2 3; do
    port=$(narvik_redis_free_port "${ports[@]+"${ports[@]}"}")
    dir="$root/$port"
    mkdir -p "$dir"
    redis-server --daemonize yes --bind 127.0.0.1 --port "$port" --dir "$dir" \
      --cluster-enabled yes --cluster-config-file "$dir/nodes.conf" --cluster-node-timeout 5000 \
      --save "" --appendonly no --logfile "$dir/redis.log" >/dev/null
    ports+=("$port")
    nodes+=("127.0.0.1:$port")
    urls+=("redis://127.0.0.1:$port")
    NARVIK_CLEANUPS+=("redis-cli -p $port shutdown nosave >/dev/null 2>&1")
  done
  NARVIK_CLEANUPS+=("rm -rf '$root'")
  for port in "${ports[@]}"; do
    local tries=0
    until narvik_redis_ping 127.0.0.1 "$port"; do
      tries=$((tries + 1))
      if [ "$tries" -ge 50 ]; then
        narvik_missing_server "a cluster node did not start on port $port (see $root/$port/redis.log)"
        return 0
      fi
      sleep 0.1
    done
  done
  if ! redis-cli --cluster create "${nodes[@]}" --cluster-replicas 0 --cluster-yes >"$root/create.log" 2>&1; then
    narvik_missing_server "redis-cli --cluster create failed (see $root/create.log)"
    return 0
  fi
  local tries=0
  for port in "${ports[@]}"; do
    until redis-cli -p "$port" cluster info 2>/dev/null | grep -q "cluster_state:ok"; do
      tries=$((tries + 1))
      if [ "$tries" -ge 100 ]; then
        narvik_missing_server "the local Redis Cluster did not reach cluster_state:ok"
        return 0
      fi
      sleep 0.1
    done
  done
  NARVIK_TEST_REDIS_CLUSTER_URLS=$(IFS=,; echo "${urls[*]}")
  export NARVIK_TEST_REDIS_CLUSTER_URLS
}

narvik_redis_single
narvik_redis_cluster
