#!/usr/bin/env bash
# Run ON the lent NVIDIA machine (device tool, carry .gl and .whl from gpu_prepare.sh).
# Installs the Vulkan loader and wheels, shows the device, runs the dot/matmul/coopmat
# tests with cooperative matrices on and off, and the kernel benchmarks.
# Everything it prints also lands under $OUT.
set -uo pipefail
OUT=${OUT:-/tmp/spvjit-gpu}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
for f in .gl/*.deb; do dpkg -x "$f" /; done
ldconfig
export VK_DRIVER_FILES=${VK_DRIVER_FILES:-/usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json}
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
export PYTHONPATH=/tmp/site:$(pwd) PYTHONUNBUFFERED=1 SPVJIT_CACHE_DIR=/tmp/spvjit-cache
nvidia-smi --query-gpu=name,driver_version --format=csv || true
python3 -m spvjit.cli.main devices --json > "$OUT/devices.json"
python3 -m spvjit.cli.main devices
tests="tests/test_coopmat.py tests/test_tutorials.py tests/test_language.py"
echo "== tests, cooperative matrices on"
python3 -m pytest -q -x -p no:cacheprovider $tests 2>&1 | tail -15
echo "== tests, SPVJIT_DISABLE_COOPMAT=1"
SPVJIT_DISABLE_COOPMAT=1 python3 -m pytest -q -x -p no:cacheprovider tests/test_coopmat.py tests/test_tutorials.py 2>&1 | tail -5
echo "== kernel benchmarks"
python3 benchmarks/kernels.py --quick --json "$OUT/kernels.json"
SPVJIT_DISABLE_COOPMAT=1 python3 benchmarks/kernels.py --quick --only matmul --json "$OUT/kernels_nocoopmat.json"
