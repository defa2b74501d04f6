# syntax=docker/dockerfile:1
# stepstitch: Firehose HTTP endpoint → Step Functions traces for Datadog.
# The build steps are mirrored by scripts/docker-build-steps.sh, which CI
# runs (there is no Docker engine in CI); keep the two in step.

ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-slim-bookworm AS build
WORKDIR /src

# 1. Dependencies only, in their own cached layer: the manifests with stub
#    sources for every target they name.
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for b in decode stitch encode pipeline store cluster; do echo 'fn main() {}' > "benches/$b.rs"; done \
    && cargo build --release --locked --bin stepstitch \
    && rm -rf src benches

# 2. The sources; only this layer rebuilds when they change.
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs \
    && cargo build --release --locked --bin stepstitch \
    && cp target/release/stepstitch /stepstitch

FROM debian:bookworm-slim AS runtime
# CA certificates for the HTTPS intakes; nothing else.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 stepstitch \
    && useradd --system --uid 10001 --gid 10001 --no-create-home \
        --home-dir /var/lib/stepstitch --shell /usr/sbin/nologin stepstitch \
    && mkdir -p /var/lib/stepstitch/data \
    && chown -R 10001:10001 /var/lib/stepstitch

COPY --from=build /stepstitch /usr/local/bin/stepstitch

# Listen on all interfaces inside the container (admin too: probes and
# Prometheus reach it through the pod IP); durable state on the volume.
ENV STEPSTITCH_LISTEN=0.0.0.0:8080 \
    STEPSTITCH_ADMIN_LISTEN=0.0.0.0:9090 \
    STEPSTITCH_DATA_DIR=/var/lib/stepstitch/data \
    STEPSTITCH_LOG_FORMAT=json \
    STEPSTITCH_LOG=info

VOLUME ["/var/lib/stepstitch/data"]
EXPOSE 8080 9090
USER 10001:10001
WORKDIR /var/lib/stepstitch
ENTRYPOINT ["/usr/local/bin/stepstitch"]
CMD ["serve"]
