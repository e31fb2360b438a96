#!/usr/bin/env bash
# Builds the images for docker-compose --env-file local.env without any registry:
#   ordershop/redis:local   Debian's Redis binaries plus the host libraries they link, and
#                           busybox's sh and awk for deploy/redis/entrypoint.sh
#   ordershop/postgres:local  Debian's PostgreSQL server, psql and pg_isready, with the
#                           host libraries they link, busybox's sh, and
#                           deploy/postgres/entrypoint.sh, which makes the cluster on the
#                           first start from the settings of Docker Hub's postgres image
#   ordershop/<svc>:local   the service binaries built here, on scratch (Dockerfile.local),
#                           with the host's CA certificates (Debian's ca-certificates)
#   ordershop/prometheus:local  Debian's Prometheus, its web UI's scripts and the host
#                           libraries it links, with busybox for its entrypoint and health
#                           check: compose's observability profile (PROMETHEUS=0 skips it)
# ORDERSHOP_TAG (default local) tags the images otherwise, so that trees built side by
# side on one Docker do not replace each other's images.
# Unchanged inputs give the same images, so a rerun takes seconds and changes nothing.
# Network: apt only (redis-tools and ca-certificates if missing, a few .debs once), and Go modules if not
# cached. BUILD_BINARIES=0 packs bin/ as it is instead of running go build; GO_TAGS=otlp builds
# the binaries with the OTLP trace exporter.
set -euo pipefail
cd "$(dirname "$0")/.."
# One build at a time: test packages running side by side may all ask for the images.
mkdir -p .build
exec 9>.build/lock
flock 9

services=(customer product inventory order billing crm msg gateway archive)
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

  copy_libs "$root" /usr/bin/redis-check-rdb /usr/bin/redis-cli

  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nredis:x:%s:%s:redis:/data:/usr/sbin/nologin\n' \
    "$redis_uid" "$redis_uid" >"$root/etc/passwd"
  printf 'root:x:0:\nredis:x:%s:\n' "$redis_uid" >"$root/etc/group"
  chmod 1777 "$root/tmp"

  # No ENTRYPOINT: compose's "command: [redis-server, ...]" then works as with redis:7-alpine.
  # Protected mode stays on (Redis's default); compose runs it with the ACL.
  reproducible_import "$root" "ordershop/redis:$tag" "$redis_uid" "$version" ./data -- \
    'ENV PATH=/usr/bin:/bin' 'WORKDIR /data' "USER $redis_uid:$redis_uid" 'EXPOSE 6379' 'CMD ["redis-server"]'
}

# Debian's PostgreSQL, for the archive of events: its packages are downloaded, never
# installed (that would start a cluster on the host). As in Docker Hub's postgres image:
# the user postgres (uid 70, the alpine image's, so that a volume may change image),
# the cluster in /var/lib/postgresql/data, the socket in /var/run/postgresql, the
# settings from POSTGRES_PASSWORD, POSTGRES_USER and POSTGRES_DB (entrypoint.sh).
postgres_image() {
  local work=.build/postgres version major debs root x lib deb
  version=$(apt-cache policy postgresql 2>/dev/null | awk '$1 == "Candidate:" {print $2}')
  if [[ -z $version || $version == "(none)" ]]; then
    as_root apt-get update -qq
    version=$(apt-cache policy postgresql | awk '$1 == "Candidate:" {print $2}')
  fi
  # postgresql (15+248) depends on postgresql-<major>, which carries the server.
  major=${version%%+*}
  debs=$work/debs/$version
  if [[ ! -e $debs/complete ]]; then
    rm -rf "$debs"
    mkdir -p "$debs"
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" \
      "postgresql-$major" "postgresql-client-$major" tzdata busybox-static)
    touch "$debs/complete"
  fi
  root=$work/rootfs x=$work/x
  rm -rf "$root" "$x"
  local bin=usr/lib/postgresql/$major/bin pkglib=usr/lib/postgresql/$major/lib
  mkdir -p "$root/$bin" "$root/$pkglib" "$root/usr/share" "$root/usr/bin" "$root/bin" "$root/etc" "$root/tmp" \
    "$root/var/lib/postgresql/data" "$root/var/run/postgresql" "$x"
  for deb in "$debs"/*.deb; do dpkg -x "$deb" "$x"; done
  cp -a "$x/$bin"/{postgres,initdb,pg_ctl,psql,pg_isready} "$root/$bin/"
  # plpgsql and the snowball dictionaries, which initdb installs; logical replication.
  for lib in plpgsql dict_snowball pgoutput libpqwalreceiver; do cp -a "$x/$pkglib/$lib.so" "$root/$pkglib/"; done
  cp -a "$x/usr/share/postgresql" "$x/usr/share/zoneinfo" "$root/usr/share/"
  cp -a "$x/bin/busybox" "$root/bin/"
  ln -s busybox "$root/bin/sh"
  install -m 755 deploy/postgres/entrypoint.sh "$root/usr/bin/entrypoint.sh"
  for deb in "postgresql-$major" tzdata busybox-static; do
    mkdir -p "$root/usr/share/doc/$deb"
    cp "$x/usr/share/doc/$deb/copyright" "$root/usr/share/doc/$deb/"
  done
  copy_libs "$root" "/$bin/postgres" "/$bin/initdb" "/$bin/psql" "/$bin/pg_isready" "/$pkglib/libpqwalreceiver.so"
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\npostgres:x:70:70:postgres:/var/lib/postgresql:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\npostgres:x:70:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  chmod 700 "$root/var/lib/postgresql/data"
  chmod 1777 "$root/var/run/postgresql" # also as a tmpfs, which takes its mode, not its owner
  version=$(dpkg-deb -f "$debs/postgresql-${major}_"*.deb Version) # the server's, not postgresql's
  reproducible_import "$root" "ordershop/postgres:$tag" 70 "$version" ./var/lib/postgresql ./var/run/postgresql -- \
    "ENV PATH=/$bin:/usr/bin:/bin" 'ENV PGDATA=/var/lib/postgresql/data' 'ENV TZ=UTC' 'WORKDIR /var/lib/postgresql' \
    'USER 70:70' 'EXPOSE 5432' 'VOLUME /var/lib/postgresql/data' \
    'ENTRYPOINT ["/usr/bin/entrypoint.sh"]' 'CMD ["postgres"]'
}

# reproducible_import root image uid version folder… -- change…: tars root reproducibly
# (fixed owners, times, order; the folders given go to uid:uid), and imports it as image
# with the Dockerfile changes given, unless the image holds that tar already (its hash is
# a label): a rerun with nothing changed takes seconds and changes nothing.
reproducible_import() {
  local root=$1 image=$2 uid=$3 version=$4 tarball=$1.tar sum current owned=() change
  shift 4
  local changes=()
  while (($#)) && [[ $1 != -- ]]; do owned+=("$1"); shift; done
  shift
  for change; do changes+=(--change "$change"); done
  local tar_opts=(--sort=name --mtime=@0 --numeric-owner)
  tar -C "$root" "${tar_opts[@]}" --owner=0 --group=0 "${owned[@]/#/--exclude=}" -cf "$tarball" .
  tar -C "$root" "${tar_opts[@]}" --owner="$uid" --group="$uid" -rf "$tarball" "${owned[@]}"
  sum=$(sha256sum "$tarball" | cut -c1-64)
  current=$(docker image inspect -f '{{index .Config.Labels "ordershop.rootfs"}}' "$image" 2>/dev/null || true)
  if [[ $current == "$sum" ]]; then
    echo "$image is up to date ($version)"
    return
  fi
  docker import "${changes[@]}" --change "LABEL ordershop.rootfs=$sum org.opencontainers.image.version=$version" \
    "$tarball" "$image" >/dev/null
  echo "built $image ($version)"
}

# copy_libs copies the host libraries that the binaries (paths in root) link into root.
copy_libs() {
  local root=$1 libs
  shift
  libs=$(ldd "${@/#/$root}")
  if grep -q 'not found' <<<"$libs"; then
    echo "missing libraries for $*:" >&2; grep 'not found' <<<"$libs" >&2; exit 1
  fi
  # "libx.so => /path (addr)" and the loader's "/lib64/ld-linux-x86-64.so.2 (addr)".
  awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' <<<"$libs" | sort -u |
    while read -r lib; do cp -L --parents "$lib" "$root"; done
}

# Debian's Prometheus, for compose's observability profile. Its package is downloaded,
# never installed (that would start a daemon on the host); its web UI loads jQuery,
# Bootstrap … from Debian's libjs packages, which come along. It runs as nobody.
prometheus_image() {
  local work=.build/prometheus version debs root x pkg
  version=$(apt-cache policy prometheus 2>/dev/null | awk '$1 == "Candidate:" {print $2}')
  if [[ -z $version || $version == "(none)" ]]; then
    as_root apt-get update -qq
    version=$(apt-cache policy prometheus | awk '$1 == "Candidate:" {print $2}')
  fi
  debs=$work/debs/$version
  if [[ ! -e $debs/complete ]]; then
    rm -rf "$debs"
    mkdir -p "$debs"
    (cd "$debs" && apt-get download -qq -o APT::Sandbox::User="$(id -un)" "prometheus=$version" \
      fonts-glyphicons-halflings libjs-bootstrap4 libjs-eonasdan-bootstrap-datetimepicker libjs-jquery \
      libjs-jquery-hotkeys libjs-moment libjs-moment-timezone libjs-mustache libjs-popper.js libjs-rickshaw \
      libjs-d3 busybox-static)
    touch "$debs/complete"
  fi
  root=$work/rootfs x=$work/x
  rm -rf "$root" "$x"
  mkdir -p "$root/usr/bin" "$root/usr/share" "$root/bin" "$root/etc/prometheus" "$root/prometheus" "$root/tmp" "$x"
  for pkg in "$debs"/*.deb; do dpkg -x "$pkg" "$x"; done
  cp -a "$x/usr/bin/prometheus" "$root/usr/bin/"
  cp -a "$x/usr/share/prometheus" "$x/usr/share/javascript" "$x/usr/share/nodejs" "$x/usr/share/fonts"* "$root/usr/share/"
  # The UI loads moment-timezone-with-data.min.js; the 200 MB of zone data beside it, never.
  rm -rf "$root/usr/share/javascript/moment-timezone/data"
  rm "$root/usr/share/nodejs/bootstrap/scss" # Bootstrap's sources, in a package left out
  # The UI's files are links into these packages: each must lead somewhere.
  local broken
  broken=$(find -L "$root/usr/share" -type l)
  if [[ -n $broken ]]; then echo "broken links in the Prometheus image:" >&2; echo "$broken" >&2; exit 1; fi
  cp -a "$x/bin/busybox" "$root/bin/"
  ln -s busybox "$root/bin/sh"
  ln -s busybox "$root/bin/wget"
  for pkg in prometheus busybox-static; do
    mkdir -p "$root/usr/share/doc/$pkg"
    cp "$x/usr/share/doc/$pkg/copyright" "$root/usr/share/doc/$pkg/"
  done
  copy_libs "$root" /usr/bin/prometheus
  printf 'root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/prometheus:/usr/sbin/nologin\n' >"$root/etc/passwd"
  printf 'root:x:0:\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 1777 "$root/tmp"
  # As the official image: the binary as entrypoint, nobody, the data in /prometheus.
  reproducible_import "$root" "ordershop/prometheus:$tag" 65534 "$version" ./prometheus -- \
    'ENV PATH=/usr/bin:/bin' 'WORKDIR /prometheus' 'USER 65534:65534' 'EXPOSE 9090' \
    'ENTRYPOINT ["/usr/bin/prometheus"]' \
    'CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]'
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
postgres_image
[[ ${PROMETHEUS:-1} == 0 ]] || prometheus_image
ca_certificates
service_images
docker image ls --filter "reference=ordershop/*:$tag" --format 'table {{.Repository}}:{{.Tag}}\t{{.ID}}\t{{.Size}}'
