#!/usr/bin/env bash
# The main job on the embedded fixtures, with no network and nothing but airlock:
#
#   connected side:   airlock serve (fixtures as the upstream registry) → lock → export → bundle.tar
#   air-gapped side:  verify bundle.tar → airlock serve (empty offline registry) → import → pull
#
# Every digest at the end is compared with the upstream one. Run it with `npm run demo`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
airlock() { node "$root/apps/airlock/bin/airlock.js" "$@"; }
work="$(mktemp -d "${TMPDIR:-/tmp}/airlock-demo.XXXXXX")"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

say() { printf '\n\033[1m==> %s\033[0m\n' "$*" >&2; }

# Starts `airlock serve ARGS` on a free port and sets $served to its HOST:PORT once it listens.
serve() {
  local log="$work/serve.$RANDOM.log"
  airlock serve "$@" --listen 127.0.0.1:0 -q >/dev/null 2>"$log" &
  pids+=($!)
  for _ in $(seq 1 100); do
    served="$(sed -n 's#.*listening on https\{0,1\}://\([0-9.]*:[0-9]*\).*#\1#p' "$log" | head -n1)"
    [[ -n "$served" ]] && return 0
    sleep 0.1
  done
  cat "$log" >&2
  return 1
}

say "Connected side: serving the fixtures (fixtures/oci) as the upstream registry"
serve --root "$root/fixtures/oci" --read-only
upstream="$served"
echo "upstream registry: $upstream" >&2

cat >"$work/images.yaml" <<YAML
version: 1
registries:
  "$upstream": { tlsVerify: false }
destination:
  naming: strip-registry
images:
  - name: $upstream/single
    tags: [latest]
  - name: $upstream/multi          # an amd64 + arm64 index, carried whole
    tags: [latest]
  - name: $upstream/base-a         # base-a and base-b share a layer: stored once
    tags: [latest]
  - name: $upstream/base-b
    tags: [latest]
YAML
say "airlock lock -f images.yaml"
airlock lock -f "$work/images.yaml"
say "airlock export -f images.yaml --locked -o bundle.tar"
airlock export -f "$work/images.yaml" --locked -o "$work/bundle.tar"

say "Air-gapped side: airlock verify bundle.tar"
airlock verify "$work/bundle.tar"

serve --root "$work/offline-store"
offline="$served"
echo "offline registry: $offline" >&2
say "airlock import bundle.tar --to $offline/mirror"
airlock import "$work/bundle.tar" --to "$offline/mirror"

say "Pulling from the offline registry: every digest equals upstream's"
status=0
for img in single multi base-a base-b; do
  want="$(airlock inspect --format '{{.Digest}}' "docker://$upstream/$img:latest")"
  got="$(airlock inspect --format '{{.Digest}}' "docker://$offline/mirror/$img:latest")"
  airlock copy -q --all "docker://$offline/mirror/$img:latest" "oci:$work/pulled:$img"
  if [[ "$want" == "$got" ]]; then echo "ok   $offline/mirror/$img:latest $got"; else echo "FAIL $img: upstream $want, offline $got"; status=1; fi
done
if command -v skopeo >/dev/null; then
  echo "skopeo agrees: $(skopeo inspect --tls-verify=false --format '{{.Digest}}' "docker://$offline/mirror/single:latest")"
fi
[[ $status -eq 0 ]] && say "Round trip complete: 4 images exported, verified, imported and pulled with identical digests"
exit $status
