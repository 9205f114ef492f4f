# Build: docker build -t mcp-gateway .
FROM rust:1-bookworm AS build
RUN apt-get update && apt-get install -y --no-install-recommends cmake pkg-config libssl-dev \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --bins

FROM debian:bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends ca-certificates libssl3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --home /var/lib/mcp-gateway mcp-gateway
COPY --from=build /src/target/release/mcp-gateway /src/target/release/mcp-demo-server /usr/local/bin/
COPY conf/gateway.yaml /etc/mcp-gateway/gateway.yaml
USER 10001
WORKDIR /var/lib/mcp-gateway
# In a container the gateway must listen beyond loopback; the network policy
# (only the auth proxy may reach it) is the deployment's job.
ENV HOST=0.0.0.0 PORT=4444
EXPOSE 4444
ENTRYPOINT ["/usr/local/bin/mcp-gateway"]
CMD ["--config", "/etc/mcp-gateway/gateway.yaml"]
