# Image for Ray head and worker pods (deployments/kuberay) and for a single
# GPU machine (`docker run --gpus all -p 9000:9000 IMAGE`).
#   docker build -t t5-electra-serve:0.1.0-cuda .
# The torch wheel from PyPI brings its own CUDA libraries; the base image
# provides the CUDA user-space layout that the NVIDIA container runtime
# fills with the host's driver.
FROM nvidia/cuda:12.8.1-base-ubuntu24.04

ARG DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates wget \
    && rm -rf /var/lib/apt/lists/*

# KubeRay expects Ray images to run as uid 1000 with a writable home.
RUN userdel -r ubuntu 2>/dev/null; useradd --create-home --uid 1000 ray
ENV VIRTUAL_ENV=/opt/venv PATH=/opt/venv/bin:$PATH HF_HOME=/home/ray/.cache/huggingface
RUN python3 -m venv /opt/venv && chown -R ray /opt/venv
USER ray
WORKDIR /home/ray

COPY --chown=ray pyproject.toml README.md /home/ray/src/
COPY --chown=ray server /home/ray/src/server
COPY --chown=ray clients /home/ray/src/clients
COPY --chown=ray deployments /home/ray/src/deployments
RUN pip install --no-cache-dir /home/ray/src && cp /home/ray/src/deployments/gpu.yaml /home/ray/ \
    && rm -rf /home/ray/src

# Checkpoints fetched at build time, so that pods start without reaching the
# hub; empty to rely on the embedded tiny checkpoints or a mounted volume.
ARG MODELS="google/flan-t5-base google/electra-base-discriminator"
RUN python -c "import sys; from transformers import AutoModel, AutoTokenizer; \
[(AutoTokenizer.from_pretrained(m), AutoModel.from_pretrained(m)) for m in sys.argv[1:]]" $MODELS

EXPOSE 9000 8000 8265 6379 10001
CMD ["t5electra", "serve", "--config", "/home/ray/gpu.yaml"]
