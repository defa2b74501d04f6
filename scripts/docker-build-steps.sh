#!/usr/bin/env bash
# The Dockerfile's build steps, run without a Docker engine (CI has none):
# the dependency layer from the manifests and stub sources, then the real
# build, then the runtime stage's defaults (ENV from the Dockerfile) started
# once: the binary must come up ready and stop cleanly on SIGTERM.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
export CARGO_TARGET_DIR="${DOCKER_STEPS_TARGET_DIR:-$root/target/docker-steps}"

say() { printf '\n== docker build steps: %s\n' "$*"; }

say "stage build, layer 1: dependencies from the manifests and stub sources"
cp "$root/Cargo.toml" "$root/Cargo.lock" "$work/"
cd "$work"
mkdir -p src benches
echo 'fn main() {}' > src/main.rs
touch src/lib.rs
# Every [[bench]] of Cargo.toml needs a stub, and the Dockerfile must list them all.
benches="$(awk '/^\[\[bench\]\]/{b=1; next} b && /^name *=/{gsub(/.*= *"|"/,""); print; b=0}' Cargo.toml)"
listed="$(grep -o 'for b in [a-z_ ]*;' "$root/Dockerfile" | sed 's/for b in //; s/;//')"
[ "$(echo $benches | tr ' ' '\n' | sort)" = "$(echo $listed | tr ' ' '\n' | sort)" ] \
  || { echo "Dockerfile bench stubs ($listed) differ from Cargo.toml's benches ($benches)" >&2; exit 1; }
for b in $benches; do echo 'fn main() {}' > "benches/$b.rs"; done
cargo build --release --locked --bin stepstitch
rm -rf src benches

say "stage build, layer 2: the sources"
cp -r "$root/src" "$root/benches" "$work/"
touch src/main.rs src/lib.rs
cargo build --release --locked --bin stepstitch
bin="$CARGO_TARGET_DIR/release/stepstitch"

say "stage runtime: the image's defaults start and stop cleanly"
# ENV lines of the Dockerfile (the runtime stage's settings), as the image has them.
eval "$(awk '/^ENV /{on=1; sub(/^ENV /,"")} on{line=$0; sub(/\\$/,"",line); gsub(/^ +/,"",line); print "export " line; if ($0 !~ /\\$/) on=0}' "$root/Dockerfile")"
: "${STEPSTITCH_DATA_DIR:?the Dockerfile sets STEPSTITCH_DATA_DIR}"
[ "$STEPSTITCH_LISTEN" = "0.0.0.0:8080" ] || { echo "unexpected STEPSTITCH_LISTEN $STEPSTITCH_LISTEN" >&2; exit 1; }
# Loopback and free ports here; the image's own data dir is replaced by a temporary one.
export STEPSTITCH_LISTEN=127.0.0.1:0 STEPSTITCH_ADMIN_LISTEN=127.0.0.1:0 STEPSTITCH_DATA_DIR="$work/data"
"$bin" serve > "$work/out.log" 2> "$work/err.log" &
pid=$!
admin=""
for _ in $(seq 1 100); do
  admin="$(grep -o '"admin":"[^"]*"' "$work/err.log" 2>/dev/null | head -1 | cut -d'"' -f4 || true)"
  [ -n "$admin" ] && break
  sleep 0.1
done
[ -n "$admin" ] || { cat "$work/err.log" >&2; kill "$pid"; exit 1; }
curl -fsS "http://$admin/ready" > /dev/null
curl -fsS "http://$admin/health" > /dev/null
kill -TERM "$pid"
wait "$pid"
grep -q '"stopped"' "$work/err.log"
echo "image defaults: ready on $admin, stopped cleanly; binary $(du -h "$bin" | cut -f1)"
