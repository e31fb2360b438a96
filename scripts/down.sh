#!/usr/bin/env bash
# Stops the stack and removes its containers, network and the Redis volume.
set -euo pipefail
cd "$(dirname "$0")/.."
exec scripts/compose.sh down -v --remove-orphans
