#!/usr/bin/env bash
# docker-compose (1.29) if installed, else the Compose v2 plugin; arguments pass through.
# CLUSTER=1: the Redis Cluster variant, docker-compose.cluster.yml over docker-compose.yml
# (COMPOSE_FILE, which both read), for every command: CLUSTER=1 make up, CLUSTER=1 make down.
# HA=1: the primary, replica and Sentinels of docker-compose.ha.yml, the same way.
set -euo pipefail
cd "$(dirname "$0")/.."
if [[ ${CLUSTER:-0} == 1 ]]; then
  export COMPOSE_FILE=docker-compose.yml:docker-compose.cluster.yml
elif [[ ${HA:-0} == 1 ]]; then
  export COMPOSE_FILE=docker-compose.yml:docker-compose.ha.yml
fi
if command -v docker-compose >/dev/null; then
  exec docker-compose "$@"
fi
exec docker compose "$@"
