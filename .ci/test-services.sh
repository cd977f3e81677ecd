#!/usr/bin/env bash
# Makes sure the servers the test suite talks to are up: PostgreSQL on 127.0.0.1:5432 with
# trust auth for local TCP connections (user postgres). Where it is missing and this is a
# root shell on Debian/Ubuntu, installs and starts it; otherwise says what to do.
set -euo pipefail

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! port_open 5432; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        if ! ls /usr/lib/postgresql/*/bin/postgres >/dev/null 2>&1; then
            echo "parley: installing PostgreSQL for the storage tests"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends postgresql >/dev/null
        fi
        version=$(ls /usr/lib/postgresql | sort -V | tail -1)
        [ -d "/etc/postgresql/$version/main" ] || pg_createcluster "$version" main >/dev/null
        hba="/etc/postgresql/$version/main/pg_hba.conf"
        if ! grep -q "^host all all 127.0.0.1/32 trust" "$hba"; then
            # Tests only: local TCP connections need no password (as on the CI machines).
            sed -i '1i host all all 127.0.0.1/32 trust' "$hba"
        fi
        echo "parley: starting PostgreSQL $version"
        pg_ctlcluster "$version" main start || pg_ctlcluster "$version" main reload
        for _ in $(seq 1 30); do port_open 5432 && break; sleep 1; done
    fi
fi
if ! port_open 5432; then
    echo "parley: the tests need PostgreSQL on 127.0.0.1:5432 (trust auth for user postgres)" >&2
    echo "parley: e.g. sudo apt-get install postgresql && sudo pg_ctlcluster <version> main start," >&2
    echo "parley: or docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres" >&2
    exit 1
fi

# Redis on 127.0.0.1:6379 for the job tests (Celery's broker); they use database 13.
if ! port_open 6379; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        if ! command -v redis-server >/dev/null 2>&1; then
            echo "parley: installing Redis for the job tests"
            export DEBIAN_FRONTEND=noninteractive
            apt-get update -qq
            apt-get install -y -qq --no-install-recommends redis-server >/dev/null
        fi
        echo "parley: starting Redis"
        # Tests only: nothing is kept on disk.
        redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no --daemonize yes >/dev/null
        for _ in $(seq 1 30); do port_open 6379 && break; sleep 1; done
    fi
fi
if ! port_open 6379; then
    echo "parley: the tests need Redis on 127.0.0.1:6379" >&2
    echo "parley: e.g. sudo apt-get install redis-server && redis-server --daemonize yes," >&2
    echo "parley: or docker run -d -p 6379:6379 redis" >&2
    exit 1
fi
# The ingest tests start their own redis-server and PostgreSQL cluster on free ports (they stop
# them mid-call): the binaries must be here even when the servers above run elsewhere.
if ! command -v redis-server >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "parley: installing redis-server for the ingest tests"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >/dev/null
fi
if ! command -v redis-server >/dev/null 2>&1 || ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    echo "parley: the ingest tests need redis-server and PostgreSQL's server binaries" >&2
    echo "parley: e.g. sudo apt-get install redis-server postgresql" >&2
    exit 1
fi
