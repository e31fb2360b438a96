# One OrderShop service as a static binary on an empty image:
#   docker build --build-arg SERVICE=order -t ordershop/order .
# Machines without a registry use Dockerfile.local (scripts/build-local-images.sh).
ARG GO_IMAGE=golang:1.26

FROM ${GO_IMAGE} AS build
WORKDIR /src
ENV CGO_ENABLED=0
# Modules first: this layer stays cached until go.mod or go.sum change.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
# All eight binaries in one step that does not depend on SERVICE, so the eight image
# builds share one compile (the layer cache) instead of compiling the module eight times.
# GO_TAGS=otlp adds the OTLP trace exporter (about 11 MB a binary).
ARG GO_TAGS=
RUN go build -tags "${GO_TAGS}" -trimpath -ldflags="-s -w" -o /out/ ./services/...

FROM build AS pick
ARG SERVICE
RUN test -n "${SERVICE}" || { echo "build with --build-arg SERVICE=<name>" >&2; exit 1; }; \
    cp "/out/${SERVICE}" /app

FROM scratch
# For rediss:// URLs; the services need nothing else from the base image.
COPY --from=build /etc/ssl/certs/ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
COPY --from=pick /app /app
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 CMD ["/app", "-healthcheck"]
ENTRYPOINT ["/app"]
