# netwarden image: the `netwarden` console script (webhook, reconciler, certs) on Python 3.11.
#
#   docker build -t netwarden/netwarden:0.1.0 .
#
# Stage 1 builds the wheel from the source tree; stage 2 installs only that wheel and its
# dependencies, so no build tools, tests or sources end up in the runtime image.

# Pinned by full tag (Python patch release + Debian release); bump deliberately.
ARG PYTHON_IMAGE=python:3.11.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# pyproject.toml names README.md as the long description; the package dirs are what
# [tool.setuptools.packages.find] includes.
COPY pyproject.toml README.md ./
# The product only: the tools (netwarden/tools: demo, stack, replay, report, the flow stand-ins) and the local
# engines (localkube) stay out of the image; `netwarden demo` there says so in one line (netwarden/cli.py).
COPY netwarden/ netwarden/
RUN rm -rf netwarden/tools && pip wheel --no-deps --wheel-dir /dist .

FROM ${PYTHON_IMAGE}
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
# The same uid/gid the chart's securityContext runs as (65532, the "nonroot" convention).
RUN groupadd --system --gid 65532 netwarden \
 && useradd --system --uid 65532 --gid 65532 --home-dir /nonexistent --no-create-home \
      --shell /usr/sbin/nologin netwarden
COPY --from=build /dist/ /tmp/dist/
RUN pip install /tmp/dist/*.whl && rm -rf /tmp/dist
USER 65532:65532
WORKDIR /tmp
# 8443: webhook and reconciler HTTPS (admission, signals, /healthz, /readyz, /metrics).
EXPOSE 8443
ENTRYPOINT ["netwarden"]
CMD ["--help"]
