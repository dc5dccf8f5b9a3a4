# layerscope service image: torch at the Makefile's TORCH_SPEC and every other runtime
# dependency at the version requirements.lock names. CPU wheels by default; PyPI's own torch
# wheels carry CUDA (the NVIDIA container runtime brings the driver), so the GPU image is the
# same file with another index:
#   docker build -t layerscope:0.1.0 .
#   docker build -t layerscope:0.1.0-cuda --build-arg TORCH_INDEX=https://pypi.org/simple .
ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# The Makefile's TORCH_SPEC (tests/test_deployment.py keeps the two equal).
ARG TORCH_SPEC="torch==2.14.1 torchvision==0.29.1"
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    LAYERSCOPE_HOST=0.0.0.0 \
    LAYERSCOPE_PORT=8000 \
    PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first, so code changes do not reinstall torch. `-c requirements.lock`: each
# package at the lock's version (a CPU wheel's +cpu label matches it); nothing from the lock
# is installed unless pyproject's runtime list needs it, so no test or lint tool lands here.
COPY pyproject.toml requirements.lock README.md ./
RUN python -m venv /opt/venv \
    && pip install --index-url "${TORCH_INDEX}" --extra-index-url https://pypi.org/simple \
       -c requirements.lock ${TORCH_SPEC} \
    && python -c "import tomllib; print(*tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies'], sep='\n')" \
       > /tmp/runtime.txt \
    && pip install -c requirements.lock -r /tmp/runtime.txt \
    && rm /tmp/runtime.txt
COPY api_schemas ./api_schemas
COPY model_registry ./model_registry
COPY service ./service
RUN pip install --no-deps . \
    && pip check \
    && useradd --create-home --uid 10001 layerscope \
    && mkdir -p /models && chown 10001 /models

USER 10001
EXPOSE 8000
VOLUME ["/models"]
# Python rather than curl: the slim image needs no apt package (urlopen raises on a 503).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request as u; u.urlopen('http://127.0.0.1:8000/readyz', timeout=2)"]
# Exec form: uvicorn gets SIGTERM directly and drains in-flight requests.
CMD ["layerscope", "serve", "--host", "0.0.0.0", "--port", "8000"]
