# One image for the gateway (the default command) and the indexer (the same image with
# `tooltool-indexer watch`, `run`, `rebuild` or `init --create` as its command): see the
# README's "Running on S3". Build it with the version it serves at /__version__:
#   docker build --build-arg VERSION=1.2.3 --build-arg COMMIT=$(git rev-parse HEAD) \
#                --build-arg BUILD=<CI job URL> -t tooltool .
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md index_schema.json ./
COPY gateway ./gateway
COPY indexer ./indexer
RUN python -m venv /opt/tooltool \
    && /opt/tooltool/bin/pip install --no-cache-dir .

FROM python:3.11-slim
ARG SOURCE=tooltool
ARG VERSION=0.1.0
ARG COMMIT=""
ARG BUILD=""
# /var/lib/tooltool: a working directory the user may write (the indexer's metrics file).
RUN useradd --system --uid 10001 --no-create-home --shell /usr/sbin/nologin tooltool \
    && mkdir -p /var/lib/tooltool && chown 10001 /var/lib/tooltool
COPY --from=build /opt/tooltool /opt/tooltool
WORKDIR /app
# Dockerflow's version.json, baked in at build time.
RUN printf '{"source": "%s", "version": "%s", "commit": "%s", "build": "%s"}\n' \
        "$SOURCE" "$VERSION" "$COMMIT" "$BUILD" > /app/version.json
ENV PATH=/opt/tooltool/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    TOOLTOOL_VERSION_FILE=/app/version.json \
    HOST=0.0.0.0 \
    PORT=8000
USER 10001
EXPOSE 8000
CMD ["tooltool-gateway"]
