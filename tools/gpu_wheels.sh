#!/usr/bin/env bash
# Gathers into .gpu_wheels/ (gitignored) the wheels that the GPU machine's image lacks, so that
# tools/gpu_check.sh can install them there with no network (the machine reaches nothing outside).
#
#   . .venv/bin/activate && bash tools/gpu_wheels.sh      # here, with PyPI reachable; prints the size
#
# The image (Python 3.12, x86_64) has torch, transformers, accelerate, sentencepiece, numpy, pyarrow,
# pandas, matplotlib, ... but not what our stage scripts import beside them: datasets (kd/training/run.py,
# kd/data/tokenization.py), dvclive (kd/training/run.py, which needs dvc), rouge-score and nltk (kd/metrics/rouge.py; no
# nltk data: sentences are split by a regex, BLEU needs none) and ruamel.yaml (kd/params.py). We also
# bring transformers at requirements.txt's version: the image's 5.17 is older than the one every test
# here runs with. Versions: requirements.txt for those, and this venv's (pip freeze) for everything
# they pull in, so the GPU runs what the tests ran.
#
# What is kept: every wheel of the dependency closure whose package the image lacks, and small
# (< 256 KiB) wheels of packages it has, as fallbacks should its copy miss a version bound (datasets
# caps fsspec, gto wants click >= 8.2, ...): pip keeps an installed copy that satisfies a bound and
# takes ours only when it does not. Fails past LIMIT_MIB (the device tool carries 64 MiB in all).
set -euo pipefail
cd "$(dirname "$0")/.."

DEST=${GPU_WHEELS_DIR:-.gpu_wheels}
LIMIT_MIB=${GPU_WHEELS_LIMIT_MIB:-40}
SMALL_KIB=256
NEEDED=(datasets dvclive dvc rouge-score nltk ruamel.yaml transformers)
# Pure-Python packages published as source only: built here into py3-none-any wheels.
SDIST_ONLY=(antlr4-python3-runtime rouge-score)
# The image's packages, as /work/.library/device/KINDS.md lists them (2026-11-17), names normalized.
IMAGE="absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch build
certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage cuda-bindings cuda-core
cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops equinox etils execnet filelock
flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch grpcio h11 h5py hf-xet httpcore httpx
huggingface-hub humanize hypothesis idna imageio iniconfig interface-meta jax jax-cuda13-pjrt
jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver lazy-loader lightning lightning-utilities
linear-operator lineax llvmlite lxml markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes
mpi4py mpmath msgpack multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba
numba-cuda numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx
onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker prometheus-client
propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing pyproject-hooks pyre-extensions
pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout pytest-xdist python-dateutil
pytorch-lightning pyyaml regex requests rich sacrebleu safetensors scikit-build-core scikit-image
scikit-learn scipy seaborn sentencepiece sentence-transformers setuptools shellingham simplejson six
sortedcontainers statsmodels sympy tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl
tifffile tiktoken timm tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics
torchvision tqdm transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp"
PLATFORMS=(--python-version 3.12 --implementation cp --only-binary=:all:
           --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
           --platform manylinux2014_x86_64 --platform manylinux1_x86_64)

normalize() { tr 'A-Z_.' 'a-z--' <<<"$1"; }
pinned() {  # NAME==VERSION from requirements.txt, else from this venv
    local name=$1 line
    line=$(grep -hiE "^$(sed 's/[-_.]/[-_.]/g' <<<"$name")==" requirements.txt "$WORK/freeze.txt" | head -1)
    [[ -n $line ]] || { echo "gpu_wheels: no pinned version of $name in requirements.txt or this venv" >&2; exit 1; }
    echo "$line"
}

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
python -m pip freeze --exclude-editable >"$WORK/freeze.txt"
PINS=()
for name in "${NEEDED[@]}"; do PINS+=("$(pinned "$name")"); done

mkdir -p "$WORK/local" "$WORK/all"
for name in "${SDIST_ONLY[@]}"; do
    python -m pip wheel -q --no-deps -w "$WORK/local" "$(pinned "$name")"
done
python -m pip download -q "${PLATFORMS[@]}" -c "$WORK/freeze.txt" --find-links "$WORK/local" -d "$WORK/all" \
    "${PINS[@]}"

rm -rf "$DEST"
mkdir -p "$DEST"
needed=" $(for n in "${NEEDED[@]}"; do normalize "$n"; done | tr '\n' ' ') "
image=" $(tr '\n' ' ' <<<"$IMAGE") "
kept=0 skipped=0
for whl in "$WORK"/all/*.whl; do
    name=$(normalize "$(basename "$whl" | cut -d- -f1)")
    size_kib=$(( $(stat -c %s "$whl") / 1024 ))
    if [[ $needed == *" $name "* || $image != *" $name "* || $size_kib -lt $SMALL_KIB ]]; then
        cp "$whl" "$DEST/"; kept=$((kept + 1))
    else
        skipped=$((skipped + 1))
    fi
done
printf '%s\n' "${PINS[@]}" >"$DEST/requirements.txt"  # what tools/gpu_check.sh installs

bytes=$(du -sb "$DEST" | cut -f1)
mib=$(python -c "print(f'{$bytes / 2**20:.1f}')")
echo "gpu_wheels: $kept wheels in $DEST ($mib MiB; $skipped on the image left out); installs: ${PINS[*]}"
if (( bytes > LIMIT_MIB * 1024 * 1024 )); then
    echo "gpu_wheels: $DEST is $mib MiB, over the $LIMIT_MIB MiB limit" >&2
    exit 1
fi
