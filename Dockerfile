# Multi-stage build: compile with the Rust toolchain, run on a small Debian base as non-root.
#   docker build -t pacs_exporter .
#   docker run -p 9000:9000 -v /etc/pacs_exporter:/config -e TZ=Europe/Moscow pacs_exporter
# The image's zone is UTC. send_check reads StudyDate/StudyTime in the module's `timezone`, else
# in TZ: set one of them to your PACS' zone (tzdata is installed for TZ names).
FROM rust:1-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
RUN cargo build --release --locked && strip target/release/pacs_exporter

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates tzdata \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --no-create-home --shell /usr/sbin/nologin pacs_exporter
COPY --from=build /src/target/release/pacs_exporter /usr/local/bin/pacs_exporter
COPY modules.yml /config/modules.yml
ENV TZ=UTC
USER 65532
EXPOSE 9000
ENTRYPOINT ["/usr/local/bin/pacs_exporter"]
CMD ["--config.file=/config/modules.yml", "--web.listen-address=:9000"]
