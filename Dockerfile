# syntax=docker/dockerfile:1
#
# Images of workforce-service and of the standalone workforce-sandbox, from one builder.
#   docker build -t workforce-service .                             # the service (last stage)
#   docker build --target sandbox -t workforce-sandbox .            # the sandbox
# docker-compose.yml builds both. scripts/check-containers.py checks this file against the
# repository, because no Docker engine runs where the tests run.

FROM rust:1-bookworm AS builder
WORKDIR /build

# The workspace, without target/, tests or scripts (see .dockerignore). .cargo/config.toml sets
# SQLX_OFFLINE=true, so the query macros compile against the committed .sqlx/ data and the
# build needs no database. The migrations are embedded into the binary at compile time.
COPY Cargo.toml Cargo.lock ./
COPY .cargo ./.cargo
COPY .sqlx ./.sqlx
COPY migrations ./migrations
COPY src ./src
COPY sandbox/Cargo.toml sandbox/topology.example.json ./sandbox/
COPY sandbox/src ./sandbox/src

# The cache mounts keep the crate downloads and compiled dependencies between builds; the
# binaries are copied out because a cache mount is not part of the image.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/build/target \
    cargo build --release --locked -p workforce-service -p workforce-sandbox \
    && mkdir -p /out \
    && cp target/release/workforce-service target/release/workforce-sandbox /out/

# Shared runtime: CA certificates for the AWS endpoints, curl for the health checks, and an
# unprivileged user.
FROM debian:bookworm-slim AS runtime
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /nonexistent --shell /usr/sbin/nologin workforce
WORKDIR /tmp
USER 10001:10001

# The standalone sandbox: SageMaker and EC2 emulation for compose and demos, never for
# production. It listens on 127.0.0.1 unless --bind or SANDBOX_BIND says otherwise.
FROM runtime AS sandbox
COPY --from=builder /out/workforce-sandbox /usr/local/bin/workforce-sandbox
ENV SANDBOX_BIND=0.0.0.0 \
    SANDBOX_PORT=4566
EXPOSE 4566
HEALTHCHECK --interval=10s --timeout=3s --start-period=5s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:4566/_sandbox/health"]
ENTRYPOINT ["workforce-sandbox"]

# The service. `docker run IMAGE migrate` or `... openapi` runs another subcommand.
FROM runtime AS service
COPY --from=builder /out/workforce-service /usr/local/bin/workforce-service
ENV WORKFORCE_LISTEN=0.0.0.0:8080 \
    WORKFORCE_LOG_FORMAT=json
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD ["curl", "-fsS", "-o", "/dev/null", "http://127.0.0.1:8080/healthz"]
ENTRYPOINT ["workforce-service"]
CMD ["serve"]
