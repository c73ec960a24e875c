# Multi-stage build: compile with the Rust toolchain, run on a small Debian base as non-root.
#   docker build --build-arg REVISION="$(git rev-parse HEAD)" \
#     --build-arg BRANCH="$(git branch --show-current)" \
#     --build-arg CREATED="$(date -u +%Y-%m-%dT%H:%M:%SZ)" -t pacs_exporter .
#   docker run -p 9000:9000 -v /etc/pacs_exporter:/config -e TZ=Europe/Moscow pacs_exporter
# The image's zone is UTC. send_check reads StudyDate/StudyTime in the module's `timezone`, else
# in TZ: set one of them to your PACS' zone (tzdata is installed for TZ names).
# .git is not sent to the build: the revision and branch come in as build arguments and are
# reported by --version and pacs_exporter_build_info ("unknown" without them).
FROM rust:1-slim-bookworm AS build
ARG REVISION=""
ARG BRANCH=""
WORKDIR /src
COPY Cargo.toml Cargo.lock build.rs ./
COPY build ./build
COPY src ./src
# The test support crate is a dev-dependency: cargo reads its manifest to resolve the
# package, and builds nothing of it for a release build.
COPY testkit ./testkit
RUN PACS_EXPORTER_REVISION="$REVISION" PACS_EXPORTER_BRANCH="$BRANCH" \
    cargo build --release --locked \
 && strip target/release/pacs_exporter

FROM debian:bookworm-slim
ARG REVISION=""
ARG VERSION="0.1.0"
ARG CREATED=""
ARG SOURCE="https://git.hospital.example/pacs_exporter"
LABEL org.opencontainers.image.title="pacs_exporter" \
      org.opencontainers.image.description="Prometheus exporter for PACS (DICOM) servers: availability probes and transfer checks" \
      org.opencontainers.image.licenses="Apache-2.0" \
      org.opencontainers.image.version="$VERSION" \
      org.opencontainers.image.revision="$REVISION" \
      org.opencontainers.image.created="$CREATED" \
      org.opencontainers.image.source="$SOURCE"
# Debian stable's packages are taken as they are updated for security, not pinned.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin pacs_exporter
COPY --from=build /src/target/release/pacs_exporter /usr/local/bin/pacs_exporter
COPY LICENSE /usr/share/doc/pacs_exporter/LICENSE
COPY modules.yml /config/modules.yml
ENV TZ=UTC
USER 65532
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/pacs_exporter"]
CMD ["--config.file=/config/modules.yml", "--web.listen-address=:9000"]
