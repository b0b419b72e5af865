# The inspection service (python -m service) in a CPU image; the CUDA build of PyTorch with
#   docker build --build-arg TORCH_VARIANT=cu128 -t glass-service:cuda .
# (PyTorch's CUDA wheels carry their CUDA libraries; run with `--gpus all`). The install step is the
# README's, unchanged: one `pip install -r requirements.txt`.
ARG BASE_IMAGE=python:3.11-slim-bookworm
FROM ${BASE_IMAGE}

# cpu, or a CUDA tag of https://download.pytorch.org/whl/ (cu126, cu128, ...): where pip finds torch/torchvision.
ARG TORCH_VARIANT=cpu
ENV PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/${TORCH_VARIANT} \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    GLASS_WEIGHTS_DIR=/data/weights

# The shared libraries opencv-python loads (libGL, GLib).
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /app
# requirements.txt ends with `-e .` (the project itself), so the code is in place before the install.
COPY . .
RUN pip install -r requirements.txt

EXPOSE 8000
# Any address but loopback needs the API token: set GLASS_SERVICE_TOKEN (docker run -e / compose).
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/api/status', timeout=4)"
CMD ["python", "-m", "service", "--host", "0.0.0.0", "--port", "8000", "--results_path", "/data/results", "--jobs_dir", "/data/outputs/jobs"]
