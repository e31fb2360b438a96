#!/usr/bin/env bash
# Prints the path of a Compose v2 binary (COMPOSE_V2_VERSION, default v2.40.3), built from
# the Go module proxy once into a cache outside the repository and reused after that:
# ${XDG_CACHE_HOME:-~/.cache}/ordershop/docker-compose-<version>. `go install` refuses the
# module (its go.mod has exclude directives), so it is downloaded and built in a copy.
# Run it directly, not as a docker CLI plugin: "$(scripts/compose-v2.sh)" -f ... up.
set -euo pipefail
export PATH="$PATH:/usr/local/go/bin"
version=${COMPOSE_V2_VERSION:-v2.40.3}
cache=${XDG_CACHE_HOME:-$HOME/.cache}/ordershop
bin=$cache/docker-compose-$version
if [[ -x $bin ]]; then
  echo "$bin"
  exit 0
fi
mkdir -p "$cache"
dir=$(go mod download -json "github.com/docker/compose/v2@$version" | sed -n 's/^\t"Dir": "\(.*\)",$/\1/p')
[[ -n $dir ]] || {
  echo "compose-v2: no module directory for github.com/docker/compose/v2@$version" >&2
  exit 1
}
src=$(mktemp -d "$cache/src.XXXXXX")
trap 'chmod -R u+w "$src"; rm -rf "$src"' EXIT
cp -r "$dir"/. "$src"
chmod -R u+w "$src"
echo "compose-v2: building $version (about two minutes)" >&2
(cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags="-s -w -X github.com/docker/compose/v2/internal.Version=$version" -o "$bin.tmp" ./cmd)
mv "$bin.tmp" "$bin" # whole or not at all: a build cut short leaves no binary behind
echo "$bin"
