#!/usr/bin/env bash
# Builds the images for docker-compose --env-file local.env without any registry:
#   ordershop/redis:local   Debian's Redis binaries plus the host libraries they link, and
#                           busybox's sh and awk for deploy/redis/entrypoint.sh
#   ordershop/<svc>:local   the service binaries built here, on scratch (Dockerfile.local),
#                           with the host's CA certificates (Debian's ca-certificates)
# ORDERSHOP_TAG (default local) tags the images otherwise, so that trees built side by
# side on one Docker do not replace each other's images.
# Unchanged inputs give the same images, so a rerun takes seconds and changes nothing.
# Network: apt only (redis-tools and ca-certificates if missing, three .debs once), and Go modules if not
# cached. BUILD_BINARIES=0 packs bin/ as it is instead of running go build; GO_TAGS=otlp builds
# the binaries with the OTLP trace exporter.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build at a time: test packages running side by side may all ask for the images.
mkdir -p .build
exec 9>.build/lock
flock 9

services=(customer product inventory order billing crm msg gateway)
tag=${ORDERSHOP_TAG:-local}
work=.build/redis
redis_uid=999

as_root() { if ((EUID)); then sudo "$@"; else "$@"; fi; }

redis_image() {
  # redis-tools carries the binaries and pulls in their libraries; unlike redis-server
  # it starts no daemon on the host.
  if ! dpkg-query -W -f='${Status}' redis-tools 2>/dev/null | grep -q 'ok installed'; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends redis-tools
  fi
  local version debs root x
  version=$(dpkg-query -W -f='${Version}' redis-tools)
  debs=$work/debs/$version
  if ! compgen -G "$debs/redis-server_*.deb" >/dev/null || ! compgen -G "$debs/redis-tools_*.deb" >/dev/null; then
    mkdir -p "$debs"
    # Sandbox user = us: apt need not hand the folder to _apt (and warn that it cannot).
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" \
      "redis-server=$version" "redis-tools=$version")
  fi
  # The entrypoint's shell: a static busybox, fetched once (its version is the first seen).
  if ! compgen -G "$debs/busybox-static_*.deb" >/dev/null; then
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" busybox-static)
  fi

  root=$work/rootfs x=$work/x
  rm -rf "$root" "$x"
  mkdir -p "$root/usr/bin" "$root/etc" "$root/data" "$root/tmp" "$x"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$x"; done
  # redis-server is a link to redis-check-rdb; the binary picks its role from argv[0].
  cp -a "$x/usr/bin/redis-check-rdb" "$x/usr/bin/redis-server" "$x/usr/bin/redis-cli" "$root/usr/bin/"
  ln -s redis-check-rdb "$root/usr/bin/redis-check-aof"
  mkdir -p "$root/bin"
  cp -a "$x/bin/busybox" "$root/bin/"
  ln -s busybox "$root/bin/sh"
  ln -s busybox "$root/bin/awk"
  mkdir -p "$root/usr/share/doc/redis"
  cp "$x/usr/share/doc/redis-server/copyright" "$root/usr/share/doc/redis/"
  mkdir -p "$root/usr/share/doc/busybox"
  cp "$x/usr/share/doc/busybox-static/copyright" "$root/usr/share/doc/busybox/"

  local libs
  libs=$(ldd "$root/usr/bin/redis-check-rdb" "$root/usr/bin/redis-cli")
  if grep -q 'not found' <<<"$libs"; then
    echo "missing libraries for redis:" >&2; grep 'not found' <<<"$libs" >&2; exit 1
  fi
  # "libx.so => /path (addr)" and the loader's "/lib64/ld-linux-x86-64.so.2 (addr)".
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$libs" | sort -u |
    while read -r lib; do cp -L --parents "$lib" "$root"; done

  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nredis:x:%s:%s:redis:/data:/usr/sbin/nologin\n' \
    "$redis_uid" "$redis_uid" >"$root/etc/passwd"
  printf 'root:x:0:\nredis:x:%s:\n' "$redis_uid" >"$root/etc/group"
  chmod 1777 "$root/tmp"

  # A reproducible tar (fixed owners, times, order), so its hash says whether anything changed.
  local tarball=$work/rootfs.tar sum current
  local tar_opts=(--sort=name --mtime=@0 --numeric-owner)
  tar -C "$root" "${tar_opts[@]}" --owner=0 --group=0 --exclude=./data -cf "$tarball" .
  tar -C "$root" "${tar_opts[@]}" --owner="$redis_uid" --group="$redis_uid" -rf "$tarball" ./data
  sum=$(sha256sum "$tarball" | cut -c1-64)
  current=$(docker image inspect -f '{{index .Config.Labels "ordershop.rootfs"}}' "ordershop/redis:$tag" 2>/dev/null || true)
  if [[ $current == "$sum" ]]; then
    echo "ordershop/redis:$tag is up to date (redis $version)"
    return
  fi
  # No ENTRYPOINT: compose's "command: [redis-server, ...]" then works as with redis:7-alpine.
  # Protected mode stays on (Redis's default); compose runs it with the ACL.
  docker import \
    --change 'ENV PATH=/usr/bin:/bin' \
    --change 'WORKDIR /data' \
    --change "USER $redis_uid:$redis_uid" \
    --change 'EXPOSE 6379' \
    --change 'CMD ["redis-server"]' \
    --change "LABEL ordershop.rootfs=$sum org.opencontainers.image.version=$version" \
    "$tarball" "ordershop/redis:$tag" >/dev/null
  echo "built ordershop/redis:$tag (redis $version)"
}

# For rediss:// URLs: the host's CA bundle, from Debian's ca-certificates.
ca_certificates() {
  local ca=/etc/ssl/certs/ca-certificates.crt
  if [[ ! -s $ca ]]; then
    as_root apt-get update -qq
    as_root apt-get install -y -qq --no-install-recommends ca-certificates
  fi
  mkdir -p .build/certs
  cp "$ca" .build/certs/ca-certificates.crt
}

# The context is just the Dockerfile, one binary and the CA bundle, not the repository.
# Output only on failure: the legacy builder warns on every build that it is deprecated.
service_image() {
  local out
  if ! out=$(tar -c Dockerfile.local "bin/$1" -C .build certs/ca-certificates.crt |
    docker build -q -f Dockerfile.local --build-arg SERVICE="$1" -t "ordershop/$1:$tag" - 2>&1); then
    printf 'ordershop/%s:%s failed:\n%s\n' "$1" "$tag" "$out" >&2
    return 1
  fi
}

service_images() {
  if [[ ${BUILD_BINARIES:-1} != 0 ]]; then
    command -v go >/dev/null || { echo "go not found: install Go, or BUILD_BINARIES=0 with bin/ filled" >&2; exit 1; }
    CGO_ENABLED=0 go build -tags "${GO_TAGS:-}" -trimpath -ldflags='-s -w' -o bin/ "${services[@]/#/./services/}"
  fi
  local s pids=() failed=0
  for s in "${services[@]}"; do
    [[ -x bin/$s ]] || { echo "bin/$s is missing: build it first (make build)" >&2; exit 1; }
  done
  for s in "${services[@]}"; do service_image "$s" & pids+=($!); done
  for s in "${pids[@]}"; do wait "$s" || failed=1; done
  ((!failed)) || exit 1
  # The images these builds replaced, unless a container still uses them.
  docker image prune -f --filter label=ordershop.image=service >/dev/null
  echo "built ordershop/{$(IFS=,; echo "${services[*]}")}:$tag"
}

redis_image
ca_certificates
service_images
docker image ls --filter "reference=ordershop/*:$tag" --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}'
