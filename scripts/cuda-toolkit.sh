#!/usr/bin/env bash
# Assembles a CUDA toolkit from PyPI wheels, for `cargo build --release --features cuda`
# on a machine with no GPU and no NVIDIA installer. Idempotent: run it again and it only
# checks. Prints the exports to `eval` at the end (on stdout; progress goes to stderr):
#
#   eval "$(bash scripts/cuda-toolkit.sh)"
#   cargo build --release --features cuda
#
# Why CUDA 13 and not 12: the CUDA 12 wheels (nvidia-cuda-nvcc-cu12, every version from
# 12.0.76 to 12.9.86) hold ptxas and libnvvm only, no nvcc, cicc, cudafe++, fatbinary or
# nvlink, so nothing can compile a .cu file with them. From 13.0 on the wheels
# (nvidia-cuda-nvcc, nvidia-nvvm, nvidia-cuda-crt, ...) are a whole compiler and all unpack
# into one tree, nvidia/cu13/{bin,include,lib,nvvm}. 13.0 is what the lent H100/H200
# machines run (nvcc 13.0, driver 580); the versions are the ones the `cuda-toolkit==13.0.2`
# meta-package pins.
#
# What llama-cpp-sys-2 0.1.160's build.rs asks of the toolkit (Linux, static llama.cpp):
#   rustc-link-lib=static=cudart_static, static=cublas_static, static=cublasLt_static,
#   static=culibos, and (unless its `cuda-no-vmm` feature) dylib `cuda` (libcuda.so),
#   searched in $CUDA_LIBRARY_PATH/lib64, $CUDA_LIBRARY_PATH/lib64/stubs, /usr/local/cuda...
# The wheels have libcudart_static.a and libculibos.a, but no libcublas_static.a or
# libcublasLt_static.a (only libcublas.so.13 / libcublasLt.so.13) and no libcuda.so at all
# (that is the driver's). So this script also makes:
#   lib/stubs/libcuda.so   a stub driver library (soname libcuda.so.1; every cu* entry point
#                          of cuda.h, each returning CUDA_ERROR_STUB_LIBRARY = 34), as the
#                          NVIDIA installer's lib64/stubs/libcuda.so does; the real driver's
#                          libcuda.so.1 is the one loaded at run time.
#   rust-link/libcublas_static.a, rust-link/libcublasLt_static.a
#                          EMPTY archives, only so that rustc finds what build.rs names; the
#                          real cuBLAS is linked dynamically through RUSTFLAGS link-args
#                          (-lcublas -lcublasLt), printed below.
set -euo pipefail

PREFIX=${CUDA_PYPI_PREFIX:-/opt/cuda-pypi}
TK=13.0.2                       # the cuda-toolkit meta-package release these pins come from
PKGS=(
  nvidia-cuda-nvcc==13.0.88     # bin/nvcc, ptxas, fatbinary, nvlink, cudafe++, crt/link.stub
  nvidia-nvvm==13.0.88          # nvvm/bin/cicc, libdevice, lib/libnvvm.so.4
  nvidia-cuda-crt==13.0.88      # include/crt/*.h
  nvidia-cuda-runtime==13.0.96  # include/cuda*.h, lib/libcudart.so.13, libcudart_static.a
  nvidia-cuda-culibos==13.0.85  # lib/libculibos.a (needed with cudart_static)
  nvidia-cuda-cccl==13.0.85     # include/cccl (cub, thrust, libcu++)
  nvidia-cublas==13.1.0.3       # lib/libcublas.so.13, libcublasLt.so.13 (~600 MB unpacked)
)
DEST=$PREFIX/cu$TK
ROOT=$DEST/nvidia/cu13
STAMP=$DEST/.installed

log() { echo "cuda-toolkit.sh: $*" >&2; }

if [[ ! -f $STAMP || "$(cat "$STAMP")" != "${PKGS[*]}" ]]; then
  log "installing ${PKGS[*]} into $DEST"
  rm -rf "$DEST"
  mkdir -p "$DEST"
  python3 -m pip install -q --disable-pip-version-check --no-deps --no-compile \
    --only-binary=:all: --target "$DEST" "${PKGS[@]}" >&2
  echo "${PKGS[*]}" >"$STAMP"
else
  log "wheels already in $DEST"
fi

# Toolkit shape: nvcc.profile and FindCUDAToolkit look in lib64 (and lib64/stubs).
ln -sfn lib "$ROOT/lib64"
for l in cudart cublas cublasLt nvblas; do
  so=$(cd "$ROOT/lib" && ls lib$l.so.* | head -1)
  ln -sfn "$so" "$ROOT/lib/lib$l.so"
done
ln -sfn libnvvm.so.4 "$ROOT/lib/libnvvm.so"
mkdir -p "$ROOT/nvvm/lib64"
ln -sfn ../../lib/libnvvm.so.4 "$ROOT/nvvm/lib64/libnvvm.so"

# Stub driver library.
if [[ ! -f $ROOT/lib/stubs/libcuda.so ]]; then
  log "making the stub libcuda.so"
  mkdir -p "$ROOT/lib/stubs"
  tmp=$(mktemp -d)
  gcc -E -P -x c "$ROOT/include/cuda.h" | tr '\n' ' ' |
    grep -oE '\b(CUresult|CUdeviceptr)[[:space:]]+cu[A-Za-z0-9_]+[[:space:]]*\(' |
    sed -E 's/.*[[:space:]](cu[A-Za-z0-9_]+).*/\1/' | sort -u |
    awk '{print "int " $1 "(void) { return 34; }"}' >"$tmp/stub.c"
  gcc -shared -fPIC -O2 -Wl,-soname,libcuda.so.1 -o "$tmp/libcuda.so" "$tmp/stub.c"
  mv "$tmp/libcuda.so" "$ROOT/lib/stubs/libcuda.so"
  rm -rf "$tmp"
fi

# The stub under the name the loader looks for, in a folder of its own: for running a cuda
# build on a machine with no NVIDIA driver (it then finds no GPU and runs on the CPU). Never
# put this folder on LD_LIBRARY_PATH where a driver is installed: it would hide the real one.
mkdir -p "$DEST/stub-driver"
ln -sfn "$ROOT/lib/stubs/libcuda.so" "$DEST/stub-driver/libcuda.so.1"

# Empty stand-ins for the static cuBLAS archives that build.rs names.
mkdir -p "$DEST/rust-link"
for a in cublas_static cublasLt_static; do
  [[ -f $DEST/rust-link/lib$a.a ]] || ar rcs "$DEST/rust-link/lib$a.a"
done

"$ROOT/bin/nvcc" --version | tail -2 >&2

cat <<EOF
export CUDA_PATH=$ROOT
export CUDAToolkit_ROOT=$ROOT
export CUDA_LIBRARY_PATH=$ROOT
export CUDACXX=$ROOT/bin/nvcc
export PATH=$ROOT/bin:\$PATH
export CMAKE_CUDA_ARCHITECTURES=\${CMAKE_CUDA_ARCHITECTURES:-90}
export CMAKE_POSITION_INDEPENDENT_CODE=ON
export RUSTFLAGS="-L native=$DEST/rust-link -C link-arg=-L$ROOT/lib -C link-arg=-lcublas -C link-arg=-lcublasLt"
# at run time (the real driver's libcuda.so.1 comes from the NVIDIA driver; on a machine
# without one, add $DEST/stub-driver to LD_LIBRARY_PATH and the build runs on the CPU):
export LD_LIBRARY_PATH=$ROOT/lib\${LD_LIBRARY_PATH:+:\$LD_LIBRARY_PATH}
export PONDER_CUDA_STUB_DRIVER=$DEST/stub-driver
EOF
