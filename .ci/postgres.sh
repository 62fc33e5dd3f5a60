#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the durability tests and print
# its DSN. Installs Debian's postgresql package when it is missing. Works as root
# (initdb and pg_ctl run as the postgres user) or as an ordinary user.
set -euo pipefail
port="${MOA_PG_PORT:-55432}"
data="${MOA_PG_DATA:-/tmp/moa-pg-$port}"
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    apt-get update -qq >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >&2
fi
bin="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)"
as_pg=()
if [ "$(id -u)" = 0 ]; then as_pg=(runuser -u postgres --); fi
if [ ! -f "$data/PG_VERSION" ]; then
    mkdir -p "$data"
    [ "$(id -u)" = 0 ] && chown postgres "$data"
    "${as_pg[@]}" "$bin/initdb" -D "$data" -A trust -U moa >/dev/null
fi
if ! "${as_pg[@]}" "$bin/pg_ctl" -D "$data" status >/dev/null 2>&1; then
    "${as_pg[@]}" "$bin/pg_ctl" -D "$data" -l "$data/log" -w \
        -o "-h 127.0.0.1 -p $port -k $data" start >&2
fi
echo "postgresql://moa@127.0.0.1:$port/postgres"
