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
