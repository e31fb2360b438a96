#!/usr/bin/env bash
# docker-compose (1.29) if installed, else the Compose v2 plugin; arguments pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
if command -v docker-compose >/dev/null; then
  exec docker-compose "$@"
fi
exec docker compose "$@"
