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
export __EGL_VENDOR_LIBRARY_FILENAMES=${__EGL_VENDOR_LIBRARY_FILENAMES:-/usr/local/nvidia/share/glvnd/egl_vendor.d/10_nvidia.json}
if ! python3 -m spvjit.cli.main devices; then
  # no point spending the lease on tests: show why the loader found no driver, then stop
  ls -l "$(dirname "$VK_DRIVER_FILES")"; cat "$VK_DRIVER_FILES"
  VK_LOADER_DEBUG=error,warn,driver python3 -m spvjit.cli.main devices 2>&1 | tail -40
  exit 1
fi
python3 -m spvjit.cli.main devices --json > "$OUT/devices.json"
# each stage is time-boxed so one hang cannot eat the lease; the summary survives in $OUT
tests="tests/test_coopmat.py tests/test_tutorials.py tests/test_language.py tests/test_elementwise.py
       tests/test_graph.py tests/test_program_loop.py tests/test_autotune.py
       tests/llama/test_kernels.py tests/llama/test_device_model.py"
echo "== tests, cooperative matrices on"
timeout 180 python3 -m pytest -q -rfE -p no:cacheprovider $tests 2>&1 | tee "$OUT/pytest_coopmat.log" | tail -25
echo "== tests, SPVJIT_DISABLE_COOPMAT=1"
SPVJIT_DISABLE_COOPMAT=1 timeout 60 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_coopmat.py tests/test_tutorials.py 2>&1 | tee "$OUT/pytest_nocoopmat.log" | tail -8
echo "== kernel benchmarks (GPU sizes)"
timeout 120 python3 benchmarks/kernels.py --gpu --json "$OUT/kernels.json"
echo "== matmul with SPVJIT_DISABLE_COOPMAT=1"
SPVJIT_DISABLE_COOPMAT=1 timeout 45 python3 benchmarks/kernels.py --gpu --only matmul --json "$OUT/kernels_nocoopmat.json"
echo "== matmul at fixed blocks, cooperative matrices on and off"
for b in 64x64x32 32x128x16; do
  timeout 60 python3 benchmarks/kernels.py --gpu --only matmul --matmul-blocks $b | tail -2
  SPVJIT_DISABLE_COOPMAT=1 timeout 60 python3 benchmarks/kernels.py --gpu --only matmul --matmul-blocks $b | tail -2
done
