# syntax=docker/dockerfile:1
# One image for every hotfeed deployable; the command picks the job:
#   docker build -t hotfeed:local .
#   docker run --rm hotfeed:local serve | gateway | index incremental --follow | cluster run | ...
# docker-compose.yml runs the whole stack from it.
#
# torch comes from the PyTorch wheel index named by TORCH_INDEX. The default is the CPU build:
# PyPI's default build pulls gigabytes of NVIDIA libraries that a CPU host never uses.
# For NVIDIA GPUs, build the CUDA variant, e.g.
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu124 -t hotfeed:cuda .
# and run with the GPU passed through (`docker run --gpus all`, or a compose device reservation).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# torch first, from its own index: the dependency install below then finds it satisfied
# instead of pulling PyPI's CUDA build.
RUN pip install --index-url "$TORCH_INDEX" torch
WORKDIR /app
# The other dependencies in their own layer, rebuilt only when pyproject.toml changes.
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt
COPY . .
# Editable on purpose: the code finds es_mappings/, proto/ and pyproject.toml next to its package
# (recommender.settings.REPO_ROOT), so the package must run from this source tree, not from a
# copy in site-packages. Then the gRPC stubs are generated into recommender/_generated/ (they are
# not in git), and everything is byte-compiled: the runtime user cannot write under /app.
RUN pip install --no-deps -e . \
    && PYTHON=/opt/venv/bin/python scripts/gen_proto.sh \
    && python -m compileall -q /app

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric id, so that orchestrators can check runAsNonRoot. The named volumes of
# docker-compose.yml start as copies of /var/lib/hotfeed/{data,artifacts}, so they belong to it too.
RUN groupadd --system --gid 10001 hotfeed \
    && useradd --system --uid 10001 --gid hotfeed --home-dir /var/lib/hotfeed --shell /usr/sbin/nologin hotfeed \
    && mkdir -p /var/lib/hotfeed/data /var/lib/hotfeed/artifacts \
    && chown -R hotfeed:hotfeed /var/lib/hotfeed
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
# Containers listen on every interface (the local defaults are 127.0.0.1); data and artifacts
# live under the volumes' mount points.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/var/lib/hotfeed \
    NUMBA_CACHE_DIR=/var/lib/hotfeed/.cache/numba \
    HOTFEED_SERVER_HOST=0.0.0.0 \
    HOTFEED_GATEWAY_HOST=0.0.0.0 \
    HOTFEED_PATHS_DATA_DIR=/var/lib/hotfeed/data \
    HOTFEED_PATHS_ARTIFACTS_DIR=/var/lib/hotfeed/artifacts \
    HOTFEED_MODEL_CHECKPOINT=/var/lib/hotfeed/artifacts/model/model.pt
WORKDIR /var/lib/hotfeed
USER 10001:10001
# gRPC recommender, HTTP gateway, recommender metrics (HOTFEED_SERVER_PORT, HOTFEED_GATEWAY_PORT,
# HOTFEED_SERVER_METRICS_PORT).
EXPOSE 50051 8080 9464
ENTRYPOINT ["hotfeed"]
CMD ["--help"]
