#!/usr/bin/env bash
# Start a throwaway local PostgreSQL server for the results-store tests and print its URL.
#
#   url=$(bash scripts/start_postgres.sh) && export ITPN_TEST_POSTGRES_URL="$url"
#   ITPN_PG_DIR=/some/dir ITPN_PG_PORT=55432 bash scripts/start_postgres.sh   # other place/port
#   bash scripts/start_postgres.sh stop
#
# Installs Debian's postgresql when no server binaries are present (root: apt-get), creates a
# cluster in $ITPN_PG_DIR (default /tmp/itpn-postgres) owned by the `postgres` user, trusting
# local connections only, listening on 127.0.0.1:$ITPN_PG_PORT. Progress goes to stderr, the
# URL alone to stdout. Idempotent: a server already running there is reused.
# The tests also need the driver: pip install -e '.[postgres]' (psycopg 3).
set -euo pipefail

PGDIR="${ITPN_PG_DIR:-/tmp/itpn-postgres}"
PORT="${ITPN_PG_PORT:-55432}"
URL="postgresql+psycopg://postgres@127.0.0.1:${PORT}/postgres"

find_bindir() {
    local version
    version=$(ls /usr/lib/postgresql 2>/dev/null | sort -V | tail -n 1)
    if [ -n "$version" ] && [ -x "/usr/lib/postgresql/$version/bin/pg_ctl" ]; then
        echo "/usr/lib/postgresql/$version/bin"
    fi
}

as_postgres() {
    if [ "$(id -un)" = "postgres" ]; then
        "$@"
    else
        runuser -u postgres -- "$@"
    fi
}

BINDIR=$(find_bindir)
if [ -z "$BINDIR" ]; then
    echo "installing postgresql with apt-get ..." >&2
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq >&2
    apt-get install -y -qq --no-install-recommends postgresql >&2
    BINDIR=$(find_bindir)
fi

if [ "${1:-start}" = "stop" ]; then
    if [ -f "$PGDIR/data/postmaster.pid" ]; then
        as_postgres "$BINDIR/pg_ctl" -D "$PGDIR/data" -m fast -w stop >&2
    fi
    exit 0
fi

mkdir -p "$PGDIR"
chown postgres:postgres "$PGDIR"
if [ ! -f "$PGDIR/data/PG_VERSION" ]; then
    as_postgres "$BINDIR/initdb" -D "$PGDIR/data" -U postgres --auth=trust --encoding=UTF8 >/dev/null
fi
if ! as_postgres "$BINDIR/pg_ctl" -D "$PGDIR/data" status >/dev/null 2>&1; then
    as_postgres "$BINDIR/pg_ctl" -D "$PGDIR/data" -l "$PGDIR/server.log" -w -t 60 \
        -o "-c listen_addresses=127.0.0.1 -p $PORT -k $PGDIR -c fsync=off" start >&2
fi
echo "$URL"
