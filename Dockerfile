# Production image: no PyTorch (the shipped networks run on ONNX Runtime), non-root user,
# `fashion-search serve` as the entry point.
# Weights and the index are volumes (see README "Docker"):
#   /data/index    the directory that holds the index link written by `fashion-search index build`
#   /models        open_clip weights (a local-dir: folder or a checkpoint file), for an open_clip embedder
# An open_clip embedder (FASHION_EMBEDDER__KIND=open_clip) or the PyTorch runtime needs PyTorch: build with
#   docker build --build-arg EXTRAS='[open_clip]' .     (or '[train]', '[open_clip,train]'; about +5 GB)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 \
    FASHION_HOST=0.0.0.0 \
    FASHION_PORT=8000 \
    FASHION_INDEX_DIR=/data/index/current

WORKDIR /app
ARG EXTRAS=""
COPY pyproject.toml README.md ./
COPY models ./models
COPY indexer ./indexer
COPY search ./search
COPY service ./service
COPY scripts ./scripts
RUN pip install ".$EXTRAS" && useradd --create-home --uid 10001 fashion && mkdir -p /data/index /models \
    && chown -R fashion /data

USER fashion
VOLUME ["/data/index", "/models"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"FASHION_PORT\"]}/healthz', timeout=4)"
ENTRYPOINT ["sh", "-c", "exec fashion-search serve --index \"$FASHION_INDEX_DIR\""]
