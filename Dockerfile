# syntax=docker/dockerfile:1
# Multi-stage build: dependencies are compiled in their own layer, cached
# until Cargo.toml or Cargo.lock change.
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
RUN mkdir -p src benches \
 && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && echo 'fn main() {}' > benches/decode.rs && echo 'fn main() {}' > benches/stitch.rs \
 && cargo build --release --locked --bin stepstitch \
 && rm -rf src benches
COPY src ./src
COPY benches ./benches
RUN touch src/main.rs src/lib.rs && cargo build --release --locked --bin stepstitch

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin stepstitch \
 && mkdir -p /var/lib/stepstitch && chown 10001:10001 /var/lib/stepstitch
COPY --from=build /src/target/release/stepstitch /usr/local/bin/stepstitch
ENV STEPSTITCH_LISTEN=0.0.0.0:8080 \
    STEPSTITCH_ADMIN_LISTEN=0.0.0.0:9090 \
    STEPSTITCH_DATA_DIR=/var/lib/stepstitch \
    STEPSTITCH_LOG_FORMAT=json
VOLUME ["/var/lib/stepstitch"]
EXPOSE 8080 9090
USER 10001:10001
ENTRYPOINT ["/usr/local/bin/stepstitch"]
CMD ["serve"]
