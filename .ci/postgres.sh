#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests, from Debian's `postgresql` package (no cluster of the
# system is used or changed): a new data folder under $TMPDIR, listening on 127.0.0.1 only, on a free
# port, trust authentication (nothing but this machine can reach it), database `ecg_test`.
#
#   .ci/postgres.sh COMMAND [ARGS...]   run COMMAND with ECG_APP_TEST_POSTGRES_URL set, then stop the
#                                       server and delete its folder; exits with COMMAND's status
#   .ci/postgres.sh                     print the URL and keep the server until Ctrl-C
#
# `make test` runs pytest through it, so the store, report, migration and history tests run against
# SQLite and PostgreSQL. As root the server runs as the `postgres` user (PostgreSQL refuses root).
set -euo pipefail

bin=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
if [ -z "$bin" ] || [ ! -x "$bin/initdb" ]; then
  echo "postgres.sh: no PostgreSQL server found under /usr/lib/postgresql (apt-get install postgresql)" >&2
  exit 2
fi
as_server=()
if [ "$(id -u)" = 0 ]; then
  as_server=(runuser -u postgres --)
fi

dir=$(mktemp -d "${TMPDIR:-/tmp}/ecg-pg.XXXXXX")
if [ ${#as_server[@]} -gt 0 ]; then
  chown postgres: "$dir"
  if ! "${as_server[@]}" test -w "$dir"; then  # e.g. TMPDIR under /root: the server user cannot reach it
    rm -rf "$dir"
    dir=$(mktemp -d /tmp/ecg-pg.XXXXXX)
    chown postgres: "$dir"
  fi
fi
started=""
sleeper=""

cleanup() {
  [ -z "$sleeper" ] || kill "$sleeper" 2>/dev/null || true
  if [ -n "$started" ]; then
    "${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
  rm -rf "$dir"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

"${as_server[@]}" "$bin/initdb" -D "$dir/data" -U postgres --auth=trust --no-locale -E UTF8 --no-sync \
  >"$dir/initdb.log" 2>&1 || { cat "$dir/initdb.log" >&2; exit 1; }

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Durability is pointless for a server that is deleted afterwards: no fsync makes the tests faster.
for _attempt in 1 2 3; do  # another program may take the free port before the server does
  port=$(free_port)
  options="-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$dir"
  options+=" -c fsync=off -c synchronous_commit=off -c full_page_writes=off"
  if "${as_server[@]}" "$bin/pg_ctl" -D "$dir/data" -o "$options" -l "$dir/server.log" -w -t 60 start \
    >/dev/null 2>&1; then
    started=1
    break
  fi
done
if [ -z "$started" ]; then
  echo "postgres.sh: the server did not start; its log:" >&2
  cat "$dir/server.log" >&2 || true
  exit 1
fi

"$bin/createdb" -h 127.0.0.1 -p "$port" -U postgres ecg_test
export ECG_APP_TEST_POSTGRES_URL="postgresql+psycopg://postgres@127.0.0.1:$port/ecg_test"
version=$("$bin/postgres" --version)
echo "postgres.sh: PostgreSQL ${version#postgres (PostgreSQL) } on 127.0.0.1:$port, ECG_APP_TEST_POSTGRES_URL=$ECG_APP_TEST_POSTGRES_URL" >&2

if [ $# -eq 0 ]; then
  echo "export ECG_APP_TEST_POSTGRES_URL=$ECG_APP_TEST_POSTGRES_URL"
  echo "postgres.sh: running until Ctrl-C" >&2
  while :; do sleep 3600 & sleeper=$!; wait "$sleeper"; done  # `wait`: INT/TERM are handled at once
fi
status=0
"$@" || status=$?
exit "$status"
