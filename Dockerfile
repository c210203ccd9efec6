# syntax=docker/dockerfile:1
# The `tally` binary (web node, collector, migrate, dlq tools) in a small runtime image.
#   docker build -t tally:local .
# Build stage: Rust plus Node 20 (web/build.rs runs `npm ci && npm run build` in web/ui
# because web/ui/dist is not in the build context). Cache mounts keep the cargo registry,
# the npm cache and target/ between builds; the image layers only hold the binary.

ARG RUST_VERSION=1.95
ARG NODE_VERSION=20

FROM node:${NODE_VERSION}-bookworm-slim AS node

FROM rust:${RUST_VERSION}-bookworm AS build
# Node and npm from the official image (Debian bookworm's own nodejs is 18: too old for Vite 7).
COPY --from=node /usr/local/bin/node /usr/local/bin/node
COPY --from=node /usr/local/lib/node_modules /usr/local/lib/node_modules
RUN ln -s /usr/local/lib/node_modules/npm/bin/npm-cli.js /usr/local/bin/npm \
 && ln -s /usr/local/lib/node_modules/npm/bin/npx-cli.js /usr/local/bin/npx \
 && node --version && npm --version
# librdkafka (bundled, configure + make), SQLite and libpq (bundled) build with the
# compilers, make, perl and pkg-config already in rust:bookworm.
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/usr/local/cargo/git \
    --mount=type=cache,target=/root/.npm \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin tally \
 && install -m 0755 target/release/tally /usr/local/bin/tally

FROM debian:bookworm-slim AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 tally \
 && useradd --system --uid 10001 --gid tally --home-dir /var/lib/tally --create-home --shell /usr/sbin/nologin tally
COPY --from=build /usr/local/bin/tally /usr/local/bin/tally
USER tally:tally
# Embedded mode keeps its SQLite file in ./data, i.e. /var/lib/tally/data.
WORKDIR /var/lib/tally
ENV TALLY_BIND=0.0.0.0:8080 \
    TALLY_LOG_FORMAT=json
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/tally"]
CMD ["serve"]
