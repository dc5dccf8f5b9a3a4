# layerscope service image. CPU by default; a CUDA base for GPUs:
#   docker build -t layerscope .
#   docker build -t layerscope:cuda --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 \
#                --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
ARG BASE_IMAGE=python:3.12-slim
FROM ${BASE_IMAGE}

ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    LAYERSCOPE_HOST=0.0.0.0 \
    LAYERSCOPE_PORT=8000

# CUDA base images carry no Python; the slim image already has it.
RUN if ! command -v python3 >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends python3 python3-venv curl \
        && rm -rf /var/lib/apt/lists/*; \
    elif ! command -v curl >/dev/null; then \
        apt-get update && apt-get install -y --no-install-recommends curl && rm -rf /var/lib/apt/lists/*; \
    fi \
    && python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH

WORKDIR /app
# Dependencies first, so code changes do not reinstall torch.
COPY pyproject.toml README.md ./
RUN pip install --index-url ${TORCH_INDEX} "torch>=2.6" "torchvision>=0.21" \
    && pip install "fastapi>=0.115" "uvicorn[standard]>=0.30" "pydantic>=2.7" "pydantic-settings>=2.3" \
       "python-multipart>=0.0.9" "pillow>=10.3" "numpy>=1.26" "scikit-learn>=1.4" "scipy>=1.11" \
       "matplotlib>=3.8" "safetensors>=0.4" "isal>=1.6" "httpx>=0.27" "prometheus-client>=0.20" \
       "python-json-logger>=3.1" "timm>=1.0" "transformers>=4.45" "huggingface_hub>=0.25" "redis>=5.0" \
       "threadpoolctl>=3.1"
COPY api_schemas ./api_schemas
COPY model_registry ./model_registry
COPY service ./service
RUN pip install --no-deps . \
    && useradd --create-home --uid 10001 layerscope \
    && mkdir -p /models && chown layerscope /models

USER layerscope
EXPOSE 8000
VOLUME ["/models"]
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
    CMD curl -fsS http://127.0.0.1:8000/readyz || exit 1
# Exec form: uvicorn gets SIGTERM directly and drains in-flight requests.
CMD ["layerscope", "serve", "--host", "0.0.0.0", "--port", "8000"]
