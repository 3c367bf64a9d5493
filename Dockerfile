# Domicile server image. Built and smoke-tested outside this repository's CI (which has no
# container runtime); CI lints this file (hadolint) and scans it (checkov). See
# docs/operations.md "Deploying" for the build and smoke-test commands.
#
# Stage 1 builds the console's single-page app (console-web/, from its lockfile) with Node.js;
# stage 2 builds the package -- the console's build included -- and its residency engine (Rust,
# crates/) into a virtual environment with the full Python image and a pinned Rust toolchain;
# stage 3 copies only that environment onto the slim image: no compiler, toolchain, Node.js,
# headers or package caches in the result.

FROM node:20-bookworm-slim AS console
WORKDIR /src/console-web
COPY console-web/package.json console-web/package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error
COPY console-web/ ./
# Vite writes into ../domicile/console/static, where the package serves it from.
RUN npm run build

FROM python:3.11-bookworm AS build
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV RUSTUP_HOME=/opt/rustup CARGO_HOME=/opt/cargo PATH=/opt/cargo/bin:$PATH
RUN curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs \
    | sh -s -- -y --no-modify-path --profile minimal --default-toolchain 1.95.0
WORKDIR /src
COPY pyproject.toml setup.py README.md Cargo.toml Cargo.lock ./
COPY protos/ protos/
COPY crates/engine/ crates/engine/
COPY crates/engine-py/ crates/engine-py/
COPY domicile/ domicile/
COPY --from=console /src/domicile/console/static/ domicile/console/static/
COPY catalog/ catalog/
COPY lineage/ lineage/
COPY router/ router/
COPY access/ access/
RUN python -m venv /opt/domicile \
    && /opt/domicile/bin/pip install --no-cache-dir . \
    && /opt/domicile/bin/pip uninstall --yes pip setuptools \
    && /opt/domicile/bin/domicile --version

FROM python:3.11-slim-bookworm
RUN groupadd --system --gid 10001 domicile \
    && useradd --system --uid 10001 --gid domicile --home-dir /var/lib/domicile --shell /usr/sbin/nologin domicile \
    && mkdir -p /var/lib/domicile /etc/domicile \
    && chown domicile:domicile /var/lib/domicile \
    && chmod 0700 /var/lib/domicile
COPY --from=build /opt/domicile /opt/domicile
COPY deploy/container.yaml /etc/domicile/domicile.yaml
COPY examples/policy.yaml /etc/domicile/example-policy.yaml
# Settings come from /etc/domicile/domicile.yaml (mount your own over it), DOMICILE_* variables
# and flags. Nothing is written outside /var/lib/domicile (the data volume) and /tmp, so the
# root filesystem can be read-only.
ENV PATH=/opt/domicile/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    DOMICILE_CONFIG=/etc/domicile/domicile.yaml \
    DOMICILE_DATA_DIR=/var/lib/domicile
USER 10001:10001
WORKDIR /var/lib/domicile
VOLUME ["/var/lib/domicile"]
# gRPC API (TLS), HTTP (OpenLineage, /metrics; TLS), plaintext gRPC health for probes,
# plaintext metrics and probes (ops_listen, off unless configured).
EXPOSE 50051 8080 50052 9090
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
    CMD ["domicile", "--insecure", "--server", "127.0.0.1:50052", "--timeout", "5", "health"]
ENTRYPOINT ["domicile"]
CMD ["serve"]
