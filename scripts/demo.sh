#!/usr/bin/env bash
# The main job on the committed example manifests/examples/fixtures.yaml (the test images of
# fixtures/, read from local OCI layouts and a dir: image), with no network and nothing but airlock:
#
#   connected side:   lock → export → bundle.tar
#   air-gapped side:  verify bundle.tar → airlock serve (empty offline registry) → import → pull
#
# Every image the offline registry serves must have the digest the bundle records for it (for an
# image cut down to some platforms, the rewritten index's digest, not the source's). Everything it
# writes (lock, bundle, registry store, pulled layout) goes into one temporary directory, removed
# at the end: the checkout is left as it was. Run it with `npm run demo`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
airlock() { node "$root/apps/airlock/bin/airlock.js" "$@"; }
example="$root/manifests/examples/fixtures.yaml"
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
  # node itself in the background (not the airlock function, a subshell): $! is the server's pid.
  node "$root/apps/airlock/bin/airlock.js" serve "$@" --listen 127.0.0.1:0 -q >/dev/null 2>"$log" &
  pids+=($!)
  for _ in $(seq 1 300); do
    served="$(sed -n 's#.*listening on https\{0,1\}://\([0-9.]*:[0-9]*\).*#\1#p' "$log" | head -n1)"
    [[ -n "$served" ]] && return 0
    sleep 0.1
  done
  cat "$log" >&2
  return 1
}

say "Connected side: airlock lock -f manifests/examples/fixtures.yaml -o images.lock.yaml"
# -o keeps the lock out of the checkout (by default it is written next to the images file).
airlock lock -f "$example" -o "$work/images.lock.yaml" | tee "$work/locked.txt"

say "airlock export -f manifests/examples/fixtures.yaml -o bundle.tar -q"
# `export --locked` reads the lock next to the images file; this export pins the sources again, and
# the check below holds it to the lock written above (what --locked does).
airlock export -q -f "$example" -o "$work/bundle.tar" | tee "$work/exported.txt"
while read -r name digest _; do
  line="$(awk -v n="$name" '$1 == n' "$work/exported.txt")"
  # The export names the locked digest: as the image's, or as the source of a rewritten index.
  if [[ "$line" != *" $digest"* ]]; then
    echo "FAIL $name: locked $digest, exported: ${line:-nothing}" >&2
    exit 1
  fi
done <"$work/locked.txt"
echo "every image exported from the source digest the lock pins" >&2

say "Air-gapped side: airlock verify bundle.tar"
airlock verify "$work/bundle.tar" | tee "$work/verified.txt"
# The images of the bundle and their digests, as verify read them: "ok NAME DIGEST".
awk '$1 == "ok" && $3 ~ /^sha256:/ { print $2, $3 }' "$work/verified.txt" >"$work/images.txt"

say "airlock serve --root offline-store: an empty offline registry"
serve --root "$work/offline-store"
offline="$served"
echo "offline registry: $offline" >&2
say "airlock import bundle.tar --to $offline/mirror"
airlock import -q "$work/bundle.tar" --to "$offline/mirror"

say "Pulling every image back from the offline registry: each digest equals the bundle's"
status=0
n=0
while read -r name want; do
  n=$((n + 1))
  ref="$offline/mirror/$name"
  # --preserve-digests: the pull changes nothing, so the digest it writes is the one the registry served.
  airlock copy -q --all --preserve-digests --digestfile "$work/digest.$n" "docker://$ref" "oci:$work/pulled:$name" || true
  got="$(cat "$work/digest.$n" 2>/dev/null || true)"
  if [[ "$got" == "$want" ]]; then
    echo "ok   $ref $got"
  else
    echo "FAIL $ref: bundle $want, offline registry ${got:-nothing}"
    status=1
  fi
  if command -v skopeo >/dev/null; then
    seen="sha256:$(skopeo inspect --raw --tls-verify=false "docker://$ref" | sha256sum | cut -d' ' -f1)"
    [[ "$seen" == "$want" ]] || { echo "FAIL $ref: skopeo reads $seen"; status=1; }
  fi
done <"$work/images.txt"
command -v skopeo >/dev/null && echo "skopeo agrees: it reads the same $n manifest digests from the offline registry"
[[ $n -gt 0 ]] || { echo "FAIL: verify listed no image" >&2; status=1; }
[[ $status -eq 0 ]] && say "Round trip complete: $n images exported, verified, imported and pulled with identical digests"
exit $status
