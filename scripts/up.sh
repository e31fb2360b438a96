#!/usr/bin/env bash
# Starts the stack and waits until every container is healthy.
# With a reachable registry: builds with Dockerfile and the Docker Hub images.
# Without one: builds local images (scripts/build-local-images.sh) and uses local.env.
# ORDERSHOP_LOCAL=1 or 0 skips the guess; UP_TIMEOUT (seconds, default 180) bounds the wait.
# CLUSTER=1 starts the Redis Cluster variant (docker-compose.cluster.yml, see scripts/compose.sh),
# HA=1 the primary, replica and Sentinels (docker-compose.ha.yml).
# COMPOSE_PROFILES=observability starts Prometheus too.
# The Redis passwords, one per user of deploy/redis/users.acl, are in .env (git-ignored):
# a missing one is generated, an existing one is never replaced; so is PostgreSQL's,
# POSTGRES_PASSWORD (the archive of events).
set -euo pipefail
cd "$(dirname "$0")/.."
compose=(scripts/compose.sh)

# Adds a line KEY=value to .env unless .env sets KEY already.
env_default() {
  grep -q "^$1=" .env || printf '%s=%s\n' "$1" "$2" >>.env
}
touch .env
chmod 600 .env
[[ ! -s .env || -z $(tail -c1 .env) ]] || echo >>.env
password() { od -An -N24 -tx1 /dev/urandom | tr -d ' \n'; }
for user in ops gateway customer product inventory order msg billing crm archive replica sentinel; do
  env_default "REDIS_PASSWORD_${user^^}" "$(password)"
done
env_default POSTGRES_PASSWORD "$(password)"

have() { docker image inspect "$1" >/dev/null 2>&1; }
if [[ -z ${ORDERSHOP_LOCAL:-} ]]; then
  ORDERSHOP_LOCAL=1
  if { have redis:7-alpine && have "${GO_IMAGE:-golang:1.26}"; } || timeout 20 docker pull -q redis:7-alpine >/dev/null 2>&1; then
    ORDERSHOP_LOCAL=0
  fi
fi

if [[ $ORDERSHOP_LOCAL == 1 ]]; then
  echo "No registry: building local images."
  scripts/build-local-images.sh
  # local.env's settings go to .env too, so that the compose commands that follow (stop,
  # start, run, logs) see them; what .env sets already stays. ORDERSHOP_TAG in the shell
  # wins, and picks the Redis and PostgreSQL images the script built with it.
  while IFS='=' read -r key value; do
    [[ $key =~ ^[A-Z_]+$ ]] && env_default "$key" "$value"
  done <local.env
  if [[ -n ${ORDERSHOP_TAG:-} ]]; then
    export REDIS_IMAGE=${REDIS_IMAGE:-ordershop/redis:$ORDERSHOP_TAG}
    export POSTGRES_IMAGE=${POSTGRES_IMAGE:-ordershop/postgres:$ORDERSHOP_TAG}
    export PROMETHEUS_IMAGE=${PROMETHEUS_IMAGE:-ordershop/prometheus:$ORDERSHOP_TAG}
  fi
  "${compose[@]}" up -d --no-build --remove-orphans
else
  "${compose[@]}" up -d --build --remove-orphans
fi

# The containers up made: the services of the active profiles (COMPOSE_PROFILES=observability
# adds Prometheus), which docker-compose 1.29's "config --services" does not tell apart; in
# the cluster variant not redis-init, which exits once the cluster is formed.
want=$("${compose[@]}" ps -q | xargs -r docker inspect -f '{{.Name}}' | grep -vc '[-_]redis-init[-_]' || true)
deadline=$((SECONDS + ${UP_TIMEOUT:-180}))
while :; do
  mapfile -t ids < <("${compose[@]}" ps -q)
  status=$(docker inspect -f '{{.Name}} {{if .State.Health}}{{.State.Health.Status}}{{else}}{{.State.Status}}{{end}}' \
    "${ids[@]}" 2>/dev/null | sed 's|^/||' | grep -v '[-_]redis-init[-_]' || true)
  waiting=$(grep -v ' healthy$' <<<"$status" | paste -sd, - || true)
  healthy=$(grep -c ' healthy$' <<<"$status" || true)
  echo "healthy: $healthy/$want${waiting:+  waiting: $waiting}"
  ((healthy >= want)) && [[ -z $waiting ]] && break
  if ((SECONDS >= deadline)); then
    "${compose[@]}" ps
    echo "Not healthy after ${UP_TIMEOUT:-180}s; see scripts/compose.sh logs" >&2
    exit 1
  fi
  sleep 2
done
port=$("${compose[@]}" port gateway 5000)
admin=$("${compose[@]}" port gateway 9000)
echo "OrderShop is up: http://127.0.0.1:${port##*:} (operators: http://127.0.0.1:${admin##*:}, this machine only)"
