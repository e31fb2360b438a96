#!/usr/bin/env bash
# What the published port costs: brings up the compose stack (the local images, tag
# ORDERSHOP_TAG, default bench) as its own project, then measures GET /customers and
# POST /customer at max through the published 127.0.0.1:$GATEWAY_PORT (docker-proxy,
# Docker's default) and through the gateway container's own address on the compose
# network (no proxy: what userland-proxy off or host networking give), in turns, and
# prints a table. crm is stopped meanwhile. Removes the project, volumes included, at the end.
# BENCHTIME (default 5s) is each attack's duration; the README quotes the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
export ORDERSHOP_TAG=${ORDERSHOP_TAG:-bench}
export REDIS_IMAGE=ordershop/redis:$ORDERSHOP_TAG
export GATEWAY_PORT=${GATEWAY_PORT:-5000} GATEWAY_ADMIN_PORT=${GATEWAY_ADMIN_PORT:-9000}
export RATE_LIMIT=0 # one client address sends thousands of requests a second
for user in ops gateway customer product inventory order msg billing crm archive replica sentinel; do
  export "REDIS_PASSWORD_${user^^}=$(od -An -N24 -tx1 /dev/urandom | tr -d ' \n')"
done
project=ordershop-proxy-$ORDERSHOP_TAG
compose() { scripts/compose.sh -p "$project" --env-file local.env "$@"; }

scripts/build-local-images.sh
trap 'compose down -v --remove-orphans >/dev/null 2>&1' EXIT
compose up -d --no-build
deadline=$((SECONDS + 120))
until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$GATEWAY_ADMIN_PORT/readyz") == 200 ]]; do
  ((SECONDS < deadline)) || { compose ps; echo "gateway not ready after 120s" >&2; exit 1; }
  sleep 1
done
# crm would mail every customer the POSTs create, meanwhile, on the same cores.
compose stop crm
ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$(compose ps -q gateway)")
echo "docker-proxy processes: $(pgrep -c -x docker-proxy || true)"
BENCHTIME=${BENCHTIME:-5s} ${GO:-go} run ./bench \
  -urls "published 127.0.0.1:$GATEWAY_PORT=http://127.0.0.1:$GATEWAY_PORT,container $ip:5000=http://$ip:5000"
