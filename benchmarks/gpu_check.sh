#!/usr/bin/env bash
# Run ON the lent NVIDIA machine (device tool, carry .gl and .whl from gpu_prepare.sh).
# Installs the Vulkan loader and wheels, shows the device, runs the dot/matmul/coopmat
# tests with cooperative matrices on and off, the launch-layout tests (the GPU layouts of the
# row kernels and matvecs, spvjit/layouts.py, on this GPU's own subgroups), the Triton tutorial kernels compiled by
# spvjit (Vulkan) and by Triton (CUDA) side by side with torch.matmul, the kernel
# benchmarks, and `spvjit bench` on the default model when .model/ was carried in.
# Everything it prints, and JSON of every figure, lands under $OUT (the time-boxes add up to
# 7 min 55 s at most: 100 + 120 + 30 + 40 + 95 + 30 + 60 s).
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
tests="tests/test_coopmat.py tests/test_coopmat_epilogue.py tests/test_coopmat_operands.py
       tests/test_coopmat_quantized.py tests/test_coopmat2.py tests/test_f16_rounding_paths.py
       tests/test_tutorials.py tests/test_language.py tests/test_elementwise.py
       tests/test_graph.py tests/test_program_loop.py tests/test_autotune.py tests/test_float_narrowing.py
       tests/llama/test_kernels.py tests/llama/test_device_model.py"
echo "== Triton tutorial kernels: spvjit for Vulkan vs Triton for CUDA vs torch (same sources)"
timeout 100 python3 benchmarks/triton_side_by_side.py --json "$OUT/side_by_side.json"
echo "== tests, cooperative matrices on"
timeout 120 python3 -m pytest -q -rfE -p no:cacheprovider $tests 2>&1 | tee "$OUT/pytest_coopmat.log" | tail -25
echo "== tests, launch layouts of the row kernels and matvecs (spvjit/layouts.py) on this GPU"
timeout 30 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_layouts.py tests/llama/test_gpu_layouts.py \
  2>&1 | tee "$OUT/pytest_layouts.log" | tail -8
echo "== tests, SPVJIT_DISABLE_COOPMAT=1"
SPVJIT_DISABLE_COOPMAT=1 timeout 40 python3 -m pytest -q -rfE -p no:cacheprovider tests/test_coopmat.py tests/test_tutorials.py 2>&1 | tee "$OUT/pytest_nocoopmat.log" | tail -8
echo "== kernel benchmarks (GPU sizes; the config column names each row kernel's and matvec's layout)"
timeout 95 python3 benchmarks/kernels.py --gpu --json "$OUT/kernels.json"
echo "== matmul with SPVJIT_DISABLE_COOPMAT=1"
SPVJIT_DISABLE_COOPMAT=1 timeout 30 python3 benchmarks/kernels.py --gpu --only matmul --json "$OUT/kernels_nocoopmat.json"
echo "== spvjit bench on the default model"
# the 98 MB GGUF is over one call's 64 MiB: gpu_prepare.sh splits it into .model/part-*,
# carried in two back-to-back calls (ignored paths stay on a warm machine between calls)
if ls .model/part-* >/dev/null 2>&1; then
  cat .model/part-* > /tmp/default.gguf
  timeout 60 python3 -m spvjit.cli.main bench /tmp/default.gguf -p 512 -n 128 --json > "$OUT/bench.json" \
    && cat "$OUT/bench.json"
else
  echo "spvjit bench: skipped, .model/ was not carried (see gpu_prepare.sh)"
fi
