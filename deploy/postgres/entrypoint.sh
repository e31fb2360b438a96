#!/bin/sh
# The entrypoint of ordershop/postgres (scripts/build-local-images.sh, Debian's
# PostgreSQL), which takes the settings of the postgres image of Docker Hub, so that
# compose and Kubernetes run either the same way:
#   POSTGRES_PASSWORD  the password of POSTGRES_USER over TCP (scram-sha-256); required,
#                      letters and digits only
#   POSTGRES_USER      the superuser (default postgres)
#   POSTGRES_DB        a database made for it (default POSTGRES_USER)
#   PGDATA             the cluster (default /var/lib/postgresql/data)
# On the first start (PGDATA without a cluster) it runs initdb there, then the command
# given (postgres, with its -c settings), listening on every address. Local connections
# (the socket in /var/run/postgresql: psql in the container) are trusted, as in that image.
# Needs sh (busybox in the image).
set -eu
: "${PGDATA:=/var/lib/postgresql/data}"
export PGDATA
user=${POSTGRES_USER:-postgres}
db=${POSTGRES_DB:-$user}
fail() {
  echo "postgres entrypoint: $*" >&2
  exit 1
}
if [ "${1:-}" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  # Letters and digits, as the Redis passwords: it may go into a URL as it is.
  case ${POSTGRES_PASSWORD:-} in
    '' | *[!A-Za-z0-9]*) fail "POSTGRES_PASSWORD must be set, letters and digits only" ;;
  esac
  for name in "$user" "$db"; do
    case $name in
      '' | [!a-z_]* | *[!a-z0-9_]*) fail "POSTGRES_USER and POSTGRES_DB: lower-case letters, digits and _ only, not \"$name\"" ;;
    esac
  done
  umask 077
  pwfile=/tmp/postgres-password
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  initdb -D "$PGDATA" -U "$user" --pwfile="$pwfile" --auth-local=trust --auth-host=scram-sha-256 \
    --encoding=UTF8 --locale=C >/dev/null || { rm -f "$pwfile"; fail "initdb failed"; }
  rm -f "$pwfile"
  echo "host all all all scram-sha-256" >>"$PGDATA/pg_hba.conf"
  echo "listen_addresses = '*'" >>"$PGDATA/postgresql.conf"
  if [ "$db" != postgres ]; then
    echo "CREATE DATABASE $db" | postgres --single -D "$PGDATA" postgres >/dev/null
  fi
  echo "postgres entrypoint: made the cluster in $PGDATA, user $user, database $db"
fi
exec "$@"
