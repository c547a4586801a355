# Build: a release binary with the migrations compiled in.
FROM rust:1.95-slim-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY migrations ./migrations
COPY config ./config
RUN cargo build --release --locked --bin offergate

# Run: a small image, a non-root user, the binary and its config.
FROM debian:bookworm-slim
RUN useradd --system --uid 10001 --no-create-home offergate
WORKDIR /app
COPY --from=build /src/target/release/offergate /usr/local/bin/offergate
COPY config ./config
USER 10001
ENV OFFERGATE_PROFILE=production
EXPOSE 8080
ENTRYPOINT ["offergate"]
CMD ["serve"]
