#!/bin/sh
# tests/services/postgres.sh: a throwaway PostgreSQL server for the tests.
#
#   postgres.sh start DIR    initdb + pg_ctl in DIR (a new or empty folder) on a free loopback
#                            port; prints the store URL postgresql://postgres@127.0.0.1:PORT/moonbert
#   postgres.sh restart DIR  pg_ctl restart (the fault test: writers lose their connections)
#   postgres.sh stop DIR     pg_ctl stop -m fast, then DIR can be removed
#
# As root the server runs as the postgres user (it refuses root), in a folder that user owns.
# synchronous_commit=off: a commit does not wait for its WAL flush, the durability of the SQLite
# store's WAL with synchronous=NORMAL (nothing lost when a process dies; the last commits
# may be lost on power loss). Authentication: trust for postgres; the role moonbert_pw (password "right") must give a
# password (scram-sha-256), for the wrong-password test. Logs: DIR/server.log, DIR/initdb.log.
# Exit 1 with the reason on stderr when the server cannot start.
set -eu
# The daemons are not ours to instrument (make sanitize preloads ASan into the specs).
unset LD_PRELOAD
cmd=${1:-}; dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: postgres.sh start|restart|stop DIR" >&2; exit 2; }
bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
[ -n "$bin" ] && [ -x "$bin/initdb" ] || { echo "PostgreSQL is not installed (apt-get install postgresql)" >&2; exit 1; }
as_pg() {
    if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
case "$cmd" in
start)
    mkdir -p "$dir"
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    if ! as_pg "$bin/initdb" -N -D "$dir/data" -A trust -U postgres > "$dir/initdb.log" 2>&1; then
        echo "initdb failed: $(tail -n 3 "$dir/initdb.log" | tr '\n' ' ')" >&2; exit 1
    fi
    # Password role first (pg_hba is read top down), trust for the rest.
    hba="$dir/data/pg_hba.conf"
    { echo "host all moonbert_pw 127.0.0.1/32 scram-sha-256"; cat "$hba"; } > "$dir/hba.tmp"
    cat "$dir/hba.tmp" > "$hba"; rm -f "$dir/hba.tmp"
    tries=0
    while :; do
        port=$(free_port)
        if as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 \
             -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c synchronous_commit=off" start > "$dir/pg_ctl.log" 2>&1; then
            break
        fi
        tries=$((tries + 1))
        [ $tries -lt 3 ] || { echo "pg_ctl start failed: $(tail -n 3 "$dir/server.log" | tr '\n' ' ')" >&2; exit 1; }
    done
    echo "$port" > "$dir/port"
    as_pg "$bin/psql" -q -h 127.0.0.1 -p "$port" -U postgres -d postgres \
        -c "CREATE DATABASE moonbert" -c "CREATE ROLE moonbert_pw LOGIN SUPERUSER PASSWORD 'right'" > /dev/null
    echo "postgresql://postgres@127.0.0.1:$port/moonbert"
    ;;
restart)
    port=$(cat "$dir/port")
    as_pg "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 30 -m fast \
        -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c synchronous_commit=off" restart > "$dir/pg_ctl.log" 2>&1
    ;;
stop)
    [ -d "$dir/data" ] && as_pg "$bin/pg_ctl" -D "$dir/data" -w -t 30 -m fast stop > /dev/null 2>&1 || true
    ;;
*) echo "usage: postgres.sh start|restart|stop DIR" >&2; exit 2 ;;
esac
