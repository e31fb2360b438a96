#!/bin/sh
# Starts Prometheus (the arguments given) after writing ADMIN_TOKEN to /tmp/admin_token,
# readable by Prometheus's user only, where prometheus.yml's scrape config reads it: the
# services' admin listeners want it when it is set. Needs sh (busybox in both the local
# image and prom/prometheus).
set -eu
umask 077
printf '%s' "${ADMIN_TOKEN:-}" >/tmp/admin_token
unset ADMIN_TOKEN
exec prometheus "$@"
