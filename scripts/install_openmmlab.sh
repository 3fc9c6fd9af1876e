#!/usr/bin/env bash
# Install the OpenMMLab stack used by the detection, segmentation and rotated-detection
# fine-tunes (itpn/mmlab, configs/) into the project's virtual environment.
#
# We use the maintained OneDL forks (they import as mmcv, mmengine, mmdet, mmseg, mmrotate):
# they support numpy 2, torch >= 2.6's weights-only checkpoint loading and mmdet 3.5 together
# with mmrotate, where the 2024 OpenMMLab releases need a pinned old setuptools, a
# weights-only workaround and two source patches to mmrotate 1.0.0rc1.
#
# mmcv publishes only a source distribution; its C++ ops take about 15 minutes to compile on two
# cores. The built wheel is cached under $ITPN_WHEEL_CACHE/torch-<torch version>/ because a
# wheel built against one torch does not load beside another (pip's own wheel cache is not
# keyed on torch, so it is bypassed). Re-running the script when the pinned versions are
# already importable does nothing.
#
# Environment:
#   PYTHON            interpreter of the target environment (default: .venv/bin/python, else python)
#   ITPN_WHEEL_CACHE  where built wheels are kept (default: ~/.cache/itpn/wheels)
#   MAX_JOBS          parallel compile jobs for mmcv (default: 2)
#   NICE              niceness of the mmcv compile (default: 10)
set -euo pipefail

MMCV_VERSION=2.3.6
MMENGINE_VERSION=0.10.12
MMDET_VERSION=3.5.1
MMSEG_VERSION=1.4.2
MMROTATE_VERSION=1.2.1

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -z "${PYTHON:-}" ]]; then
    if [[ -x "$repo_root/.venv/bin/python" ]]; then PYTHON="$repo_root/.venv/bin/python"; else PYTHON=python3; fi
fi
# One absolute interpreter path: the mmcv build below runs from inside its unpacked source, where a
# relative path such as .venv/bin/python no longer resolves. A bare name is looked up on PATH.
if [[ "$PYTHON" == */* ]]; then
    PYTHON="$(cd "$(dirname "$PYTHON")" && pwd)/$(basename "$PYTHON")"
else
    PYTHON="$(command -v "$PYTHON")" || { printf '[install_openmmlab] no interpreter %s on PATH\n' "$PYTHON" >&2; exit 1; }
fi
[[ -x "$PYTHON" ]] || { printf '[install_openmmlab] PYTHON=%s is not an executable interpreter\n' "$PYTHON" >&2; exit 1; }
pip=("$PYTHON" -m pip)

log() { printf '[install_openmmlab] %s\n' "$*" >&2; }

stack_ready() {
    # True when every pinned distribution is installed and mmcv's compiled ops load beside
    # the installed torch (a wheel built against another torch fails right here).
    "$PYTHON" - "$MMCV_VERSION" "$MMENGINE_VERSION" "$MMDET_VERSION" "$MMSEG_VERSION" "$MMROTATE_VERSION" <<'EOF' 2>/dev/null
import importlib.metadata as md, sys
wanted = dict(zip(["onedl-mmcv", "onedl-mmengine", "onedl-mmdetection", "onedl-mmsegmentation",
                   "onedl-mmrotate"], sys.argv[1:]))
for dist, version in wanted.items():
    if md.version(dist) != version:
        sys.exit(1)
import mmcv.ops  # noqa: F401  loads mmcv._ext
import mmdet, mmseg, mmrotate  # noqa: F401,E401  each checks the versions of its dependencies
from mmrotate.models.detectors import h2rbox_v2  # noqa: F401  the module with a torchvision import
EOF
}

if stack_ready; then
    log "OpenMMLab stack already installed (onedl-mmcv $MMCV_VERSION, mmdet $MMDET_VERSION, mmseg $MMSEG_VERSION, mmrotate $MMROTATE_VERSION)"
    exit 0
fi

torch_version="$("$PYTHON" -c 'import torch; print(torch.__version__)')" || {
    log "torch is not importable with $PYTHON: install the project first (make setup)"; exit 1; }
python_tag="$("$PYTHON" -c 'import sys; print(f"cp{sys.version_info[0]}{sys.version_info[1]}")')"
cache_dir="${ITPN_WHEEL_CACHE:-$HOME/.cache/itpn/wheels}/torch-${torch_version}"
mkdir -p "$cache_dir"

# Build requirements of mmcv's setup.py (it is built without build isolation so that it
# compiles against the installed torch, not a fresh one pip would download).
"${pip[@]}" install --quiet 'packaging>=24.2' wheel ninja psutil

shopt -s nullglob
wheels=("$cache_dir"/onedl_mmcv-"$MMCV_VERSION"-"$python_tag"-*.whl)
if (( ${#wheels[@]} == 0 )); then
    log "building onedl-mmcv $MMCV_VERSION against torch $torch_version (CPU ops, 78 source files: about 15 min on 2 cores)"
    build_dir="$(mktemp -d)"
    trap 'rm -rf "$build_dir"' EXIT
    "${pip[@]}" download --quiet --no-deps --no-binary :all: "onedl-mmcv==$MMCV_VERSION" --dest "$build_dir"
    tar -xzf "$build_dir/onedl_mmcv-$MMCV_VERSION.tar.gz" -C "$build_dir"
    source_dir="$build_dir/onedl_mmcv-$MMCV_VERSION"
    # torch >= 2.10 headers need C++20, but mmcv's setup.py passes -std=c++17 for every torch
    # newer than 1.12. Patch that one line, after checking it is exactly what we expect.
    if grep -q 'C++20 or later compatible compiler is required' \
            "$("$PYTHON" -c 'import torch.utils.cpp_extension as e; print(e.include_paths()[0])')/ATen/ATen.h"; then
        expected="                extra_compile_args['cxx'] = ['-std=c++17']"
        count="$(grep -cxF "$expected" "$source_dir/setup.py" || true)"
        if [[ "$count" != 1 ]]; then
            log "cannot patch onedl-mmcv $MMCV_VERSION setup.py for C++20: expected the line"
            log "  $expected"
            log "exactly once, found it $count times; the source changed, update this script"
            exit 1
        fi
        sed -i "s/^                extra_compile_args\['cxx'\] = \['-std=c++17'\]\$/                extra_compile_args['cxx'] = ['-std=c++20']/" "$source_dir/setup.py"
        grep -qxF "                extra_compile_args['cxx'] = ['-std=c++20']" "$source_dir/setup.py" || {
            log "patching $source_dir/setup.py for C++20 failed"; exit 1; }
        log "patched mmcv setup.py: -std=c++17 -> -std=c++20 (torch $torch_version headers need C++20)"
    fi
    # CPU-only ops: mmcv's setup.py compiles CUDA kernels when it sees a GPU or FORCE_CUDA=1.
    # The compiler's output goes to a log; every 30 s a heartbeat shows ninja's "[done/total]"
    # count and the elapsed time, instead of pip's silent "Building wheel ... still running".
    build_log="$build_dir/mmcv-build.log"
    log "compiler output: $build_log"
    (cd "$source_dir" && CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0 MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-2}" \
        exec nice -n "${NICE:-10}" "${pip[@]}" wheel --verbose --no-deps --no-build-isolation --no-cache-dir . \
        --wheel-dir "$build_dir/wheel") >"$build_log" 2>&1 &
    build_pid=$!
    started=$SECONDS
    while kill -0 "$build_pid" 2>/dev/null; do
        for _ in $(seq 30); do kill -0 "$build_pid" 2>/dev/null && sleep 1; done
        kill -0 "$build_pid" 2>/dev/null || break
        step="$(grep -oE '^ *\[[0-9]+/[0-9]+\]' "$build_log" | tail -n 1 | tr -d ' ' || true)"
        elapsed=$((SECONDS - started))
        log "compiling mmcv ops: ${step:-[preparing]} source files, $((elapsed / 60)) min $((elapsed % 60)) s elapsed"
    done
    if ! wait "$build_pid"; then
        log "building onedl-mmcv failed; the last lines of $build_log:"
        tail -n 40 "$build_log" >&2
        trap - EXIT  # keep the log for the user
        exit 1
    fi
    log "compiled mmcv ops in $(((SECONDS - started) / 60)) min $(((SECONDS - started) % 60)) s"
    built=("$build_dir"/wheel/onedl_mmcv-*.whl)
    if (( ${#built[@]} != 1 )); then log "mmcv build produced no wheel in $build_dir"; exit 1; fi
    mv "${built[0]}" "$cache_dir/"
    wheels=("$cache_dir"/onedl_mmcv-"$MMCV_VERSION"-"$python_tag"-*.whl)
    log "cached ${wheels[0]}"
else
    log "using cached ${wheels[0]}"
fi

# onedl-mmdetection depends on imaug, which caps opencv below 4.13 and so numpy below 2.3.
"${pip[@]}" install "${wheels[0]}" \
    "onedl-mmengine==$MMENGINE_VERSION" \
    "onedl-mmdetection==$MMDET_VERSION" \
    "onedl-mmsegmentation==$MMSEG_VERSION" \
    "onedl-mmrotate==$MMROTATE_VERSION"

if ! stack_ready; then
    log "the OpenMMLab stack installed but does not import; the error follows"
    "$PYTHON" -c 'import mmcv.ops, mmdet, mmseg, mmrotate; from mmrotate.models.detectors import h2rbox_v2'
    exit 1
fi
"${pip[@]}" check
log "OpenMMLab stack ready"
