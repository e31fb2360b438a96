#!/bin/sh
# Starts Redis (the command given, e.g. redis-server --appendonly yes) on the ACL of
# users.acl beside this script, rendered with the passwords from the environment: every
# ${REDIS_PASSWORD_<USER>} in it must be set, letters and digits only. The rendered file
# is written to REDIS_ACL_FILE (default /tmp/users.acl), readable by Redis's user only.
# Needs sh and awk (busybox in the local image, the alpine image's own).
set -eu
template=${REDIS_ACL_TEMPLATE:-$(dirname "$0")/users.acl}
acl=${REDIS_ACL_FILE:-/tmp/users.acl}
umask 077
# An ACL file has no comments and one line per user.
awk '
  /^[ \t]*(#|$)/ { next }
  {
    line = $0
    while (match(line, /[$][{][A-Z_]+[}]/)) {
      name = substr(line, RSTART + 2, RLENGTH - 3)
      value = ENVIRON[name]
      if (value !~ /^[A-Za-z0-9]+$/) {
        print "redis entrypoint: " name " must be set, letters and digits only" > "/dev/stderr"
        failed = 1
        exit 1
      }
      line = substr(line, 1, RSTART - 1) value substr(line, RSTART + RLENGTH)
    }
    gsub(/[ \t]+/, " ", line)
    sub(/ $/, "", line)
    if (line ~ /^ /) { out = out line; next }
    if (out != "") print out
    out = line
  }
  END {
    if (failed) exit 1
    if (out != "") print out
  }
' "$template" >"$acl"
exec "$@" --aclfile "$acl"
