# Build: docker build -t mcp-gateway .
# Run:   docker run -p 4444:4444 --env-file env -v mcp-data:/var/lib/mcp-gateway mcp-gateway
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Exactly what `make build` runs (tests/integration/deploy.rs compares the
# two), so CI's `make build` proves this stage without a container engine.
RUN cargo build --release --bins

FROM debian:bookworm-slim
# OpenSSL is linked in (pingora-openssl builds it, `vendored`): only the CA
# roots for upstream TLS are needed from the system.
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --home-dir /var/lib/mcp-gateway --no-create-home mcp-gateway \
    && install -d -o 10001 -g 10001 -m 0700 /var/lib/mcp-gateway
COPY --from=build /src/target/release/mcp-gateway /src/target/release/mcp-demo-server /usr/local/bin/
COPY conf/gateway.yaml /etc/mcp-gateway/gateway.yaml
USER 10001:10001
# The SQLite registry file (DATABASE_URL below) outlives the container here.
WORKDIR /var/lib/mcp-gateway
VOLUME ["/var/lib/mcp-gateway"]
# In a container the gateway must listen beyond loopback; the network policy
# (only the auth proxy may reach it) is the deployment's job.
ENV HOST=0.0.0.0 \
    PORT=4444 \
    MCP_GATEWAY_CONFIG=/etc/mcp-gateway/gateway.yaml \
    DATABASE_URL=sqlite:////var/lib/mcp-gateway/mcp.db
EXPOSE 4444
# SIGTERM drains: /ready answers 503 for SHUTDOWN_DRAIN_SECONDS, then in-flight
# requests get SHUTDOWN_GRACE_SECONDS; give `docker stop -t` more than both.
STOPSIGNAL SIGTERM
# The binary probes its own /health (HOST 0.0.0.0 → loopback): no curl in the image.
HEALTHCHECK --interval=10s --timeout=5s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/mcp-gateway", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/mcp-gateway"]
