#!/usr/bin/env bash
# Stops the stack and removes its containers, network and volumes (Redis's, PostgreSQL's, Prometheus's),
# those of the observability profile too.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/compose.sh --profile observability down -v --remove-orphans
