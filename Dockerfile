# BattleScope: one image for every service (`battlescope serve <service>`,
# `battlescope migrate <service>`, `battlescope run`, `battlescope demo`).
#
# Multi-arch (small ARM clusters are a common self-hosting target):
#   docker buildx build --platform linux/amd64,linux/arm64 -t battlescope:latest --push .
# Each platform builds natively under QEMU/binfmt or on a native builder node;
# nothing in the build is architecture-specific (librdkafka is built from source by cmake).

# ---- builder -------------------------------------------------------------------------------
FROM rust:1-bookworm AS builder
# cmake, g++ and the curl headers build librdkafka for the Kafka-protocol bus.
RUN apt-get update \
 && apt-get install -y --no-install-recommends cmake g++ pkg-config libcurl4-openssl-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache mounts keep the registry and target dir between builds; the binary is copied
# out of the cache mount because it is not part of the image layer.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p battlescope --features kafka \
 && install -Dm755 target/release/battlescope /out/battlescope

# ---- runtime -------------------------------------------------------------------------------
FROM debian:bookworm-slim
# ca-certificates: TLS to zKillboard, ESI and EVE SSO; libcurl4: librdkafka's OIDC helper links it.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libcurl4 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 battlescope \
 && useradd --system --uid 10001 --gid battlescope --home-dir /data --create-home battlescope
COPY --from=builder /out/battlescope /usr/local/bin/battlescope
USER 10001:10001
WORKDIR /data
# Containers listen on every interface; the per-service ports are the defaults of `ports.*`.
# GLIBC_TUNABLES: glibc keeps freed memory in per-thread arenas and behind a dynamic mmap
# threshold (~110 MB of the all-in-one process after the week's import, measured by
# `battlescope bench`, see docs/BENCHMARKS.md). The binary sets the same tunables itself by
# re-executing once (apps/battlescope/src/malloc.rs); setting them here skips that step.
ENV GLIBC_TUNABLES=glibc.malloc.arena_max=2:glibc.malloc.mmap_threshold=65536:glibc.malloc.trim_threshold=65536 \
    BATTLESCOPE_DATA_DIR=/data \
    BATTLESCOPE_LISTEN=0.0.0.0:3000 \
    BATTLESCOPE_PORTS__HOST=0.0.0.0 \
    BATTLESCOPE_LOG_FORMAT=json
VOLUME ["/data"]
EXPOSE 3000 3001 3002 3003 3004 3005 3006 3007
ENTRYPOINT ["battlescope"]
CMD ["demo"]
