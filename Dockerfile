# syntax=docker/dockerfile:1
# Build: a static, CGO-free binary (SQLite is pure Go).
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 GOOS=linux go build -trimpath -ldflags="-s -w" -o /out/careloop .

# Run: distroless static, non-root, nothing but the binary and CA certificates.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/careloop /usr/local/bin/careloop
ENV CARELOOP_ADDR=:8080 \
    CARELOOP_DATA_DIR=/var/lib/careloop
WORKDIR /var/lib/careloop
USER nonroot:nonroot
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=4s --start-period=20s --retries=3 \
  CMD ["/usr/local/bin/careloop", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/careloop"]
CMD ["serve"]
