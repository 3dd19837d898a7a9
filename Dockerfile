# The hubbub image: the one binary, every role (`hubbub gateway`, `room`,
# `group`, `gift`, `presence`, `migrate`). The Helm chart's default image.
#
#   docker build -t hubbub:0.1.0 .

# ---- build -------------------------------------------------------------------
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
# The contracts compile with protox (pure Rust): no protoc needed.
COPY . .
RUN cargo build --release --locked -p hubbub \
    && cp target/release/hubbub /hubbub \
    && strip /hubbub

# ---- run -----------------------------------------------------------------------
# distroless/cc: glibc and CA certificates, no shell, no package manager.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /hubbub /usr/local/bin/hubbub
# 65532: the image's `nonroot` user; the chart also sets runAsNonRoot.
USER 65532:65532
# Public client API; internal ports of gateway, room, group, gift, presence.
EXPOSE 7700 7701 7702 7703 7704 7705
ENTRYPOINT ["/usr/local/bin/hubbub"]
CMD ["all"]
