# shellcheck shell=bash
# A private PostgreSQL cluster for a benchmark script: `pg_cluster_start DIR` runs initdb
# and pg_ctl (Debian's `postgresql` package; as the `postgres` user when run as root, which
# PostgreSQL refuses to run as) in DIR on a free loopback port, with fsync and
# synchronous_commit on, and sets PG_URL_BASE (postgres://vault@127.0.0.1:PORT);
# `pg_cluster_stop DIR` stops it; `pg_cluster_createdb NAME` creates a database.

pg_bin() {
    local d
    d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [ -n "$d" ] || d=$(pg_config --bindir 2>/dev/null) || true
    if [ -z "$d" ] || [ ! -x "$d/initdb" ]; then
        echo "PostgreSQL's server programs were not found: apt-get install postgresql" >&2
        return 1
    fi
    echo "$d"
}

pg_as() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

pg_cluster_start() {
    local dir=$1 bin port
    bin=$(pg_bin)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres:postgres "$dir"
    pg_as "$bin/initdb" -D "$dir/data" -U vault --auth=trust -E UTF8 --no-sync >/dev/null
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    pg_as "$bin/pg_ctl" start -w -D "$dir/data" -l "$dir/server.log" -o \
        "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir -c fsync=on -c synchronous_commit=on -c max_connections=200 -c shared_buffers=256MB" >/dev/null
    PG_URL_BASE="postgres://vault@127.0.0.1:$port"
    PG_PORT=$port
    PG_DIR=$dir
}

pg_cluster_stop() {
    local bin
    bin=$(pg_bin) || return 0
    pg_as "$bin/pg_ctl" stop -m fast -w -D "$1/data" >/dev/null 2>&1 || true
}

pg_cluster_createdb() {
    pg_as "$(pg_bin)/psql" -q -h 127.0.0.1 -p "$PG_PORT" -U vault -d postgres -c "CREATE DATABASE $1"
}
