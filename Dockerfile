# The cinemate service image: API (`cinemate serve`), projection worker (`cinemate worker`)
# and Kafka relay (`cinemate relay`) all run from it. Slim, pinned, non-root. Its packages
# are exactly uv.lock's, without the test extras, installed (hashes checked) by the pinned
# uv of scripts/requirements-uv.txt in a build stage that the final image leaves behind.
# Swagger UI for /docs: the pinned swagger-ui-dist, integrity-checked (scripts/docs-assets.sh).
FROM node:20.18.1-bookworm-slim AS docs-assets
WORKDIR /src
COPY scripts/docs-assets.sh scripts/
RUN bash scripts/docs-assets.sh /assets

FROM python:3.11.10-slim-bookworm AS build

# Bytecode compiled at build time (UV_COMPILE_BYTECODE): the image runs with
# PYTHONDONTWRITEBYTECODE, so without it each process (serve, its worker, the relay)
# compiled every import from source at start, 2-3 s of a core each.
ENV PIP_NO_CACHE_DIR=1 \
    PIP_ROOT_USER_ACTION=ignore \
    UV_PYTHON_DOWNLOADS=never \
    UV_LINK_MODE=copy \
    UV_NO_CACHE=1 \
    UV_COMPILE_BYTECODE=1

WORKDIR /app
COPY scripts/requirements-uv.txt ./scripts/
RUN pip install --no-deps --require-hashes --only-binary :all: -r scripts/requirements-uv.txt
COPY pyproject.toml uv.lock README.md ./
# The dependencies in a layer of their own: a code change reinstalls cinemate alone.
RUN uv sync --locked --no-editable --no-install-project
COPY cinemate ./cinemate
COPY event_store ./event_store
COPY command_side ./command_side
COPY query_side ./query_side
COPY projections ./projections
COPY model ./model
COPY schema ./schema
COPY --from=docs-assets /assets ./cinemate/static/swagger-ui
RUN uv sync --locked --no-editable

FROM python:3.11.10-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/app/.venv/bin:$PATH \
    CINEMATE_DATA_DIR=/var/lib/cinemate

WORKDIR /app
# The same base image as the build stage, so the venv's interpreter links resolve.
COPY --from=build /app/.venv /app/.venv
RUN useradd --system --uid 10001 --home-dir /var/lib/cinemate --create-home cinemate

USER cinemate
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
    CMD python -c "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/api/v1/health/live', timeout=2).status != 200)"
CMD ["cinemate", "serve", "--host", "0.0.0.0", "--port", "8000"]
