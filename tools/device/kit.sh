#!/usr/bin/env bash
# Prepare, on this (CPU) machine, what a lent GPU machine needs to run the book; see README.md here.
#
#   bash tools/device/kit.sh
#
# 1. downloads the wheels that the device's Python (3.12, with PyTorch and the scientific stack
#    already installed) lacks, pinned in tools/device/wheels.txt, and unpacks them into .devsite/
#    (git-ignored), a folder the device's Python reads through PYTHONPATH;
# 2. copies Fashion-MNIST's four IDX files into data/FashionMNIST/raw/ (the data cache, git-ignored),
#    from Debian's dataset-fashion-mnist package, since the device machine reaches no network;
# 3. prints the size of what a `run` call will carry (the device tool's limit is 64 MiB in all).
set -euo pipefail
cd "$(dirname "$0")/../.."
PY=${PYTHON:-python3}
PYVER=${DEVICE_PYTHON_VERSION:-3.12}

WHL=${WHEEL_CACHE:-/tmp/rni-device-wheels}
rm -rf "$WHL" .devsite && mkdir -p "$WHL" .devsite
platforms=()
for n in 39 35 34 31 28 27 24 17 5; do platforms+=(--platform "manylinux_2_${n}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
grep -v -E '^\s*(#|$)' tools/device/wheels.txt > "$WHL/wanted.txt"
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" --implementation cp \
    "${platforms[@]}" -d "$WHL" -r "$WHL/wanted.txt"
# A wheel is a zip laid out for site-packages: unpacked side by side they form a folder that the
# device's Python uses through PYTHONPATH, with nothing to install there. What is trimmed, to fit the
# tool's 64 MiB, is unused when notebooks run: the compiled extensions' symbol
# tables (POT's bsp_wrap is 174 MB unstripped, 1 MB stripped), pyautoattack's example model files
# (45 MB), the packages' own test suites, jedi's bundled type stubs (33 MB; IPython's completion only), the debugger debugpy
# (12 MB; ipykernel imports it only if present) and the wheels' .data folders (front-end files
# that an install would put under share/jupyter, and widgetsnbextension, the classic notebook's
# widget front end, which ipywidgets does not import).
for w in "$WHL"/*.whl; do "$PY" -m zipfile -e "$w" .devsite/; done
find .devsite -name '*.so' -exec strip --strip-unneeded {} +
rm -rf .devsite/pyautoattack/examples .devsite/jedi/third_party .devsite/debugpy .devsite/debugpy-*.dist-info \
    .devsite/*.data .devsite/widgetsnbextension
find .devsite -depth -type d \( -name __pycache__ -o -name tests \) -exec rm -rf {} +
echo "packages: $(ls "$WHL"/*.whl | wc -l) wheels unpacked into .devsite ($(du -sh .devsite | cut -f1))"

src=/usr/share/datasets/fashion-mnist
dst=data/FashionMNIST/raw
mkdir -p "$dst"
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    if [ ! -f "$dst/$f.gz" ] && [ ! -f "$dst/$f" ]; then
        if [ -f "$src/$f.gz" ]; then cp "$src/$f.gz" "$dst/"; else
            echo "missing $src/$f.gz: apt-get install dataset-fashion-mnist (or run tools/bootstrap.sh)" >&2; exit 1; fi
    fi
done
echo "Fashion-MNIST: $(du -sh "$dst" | cut -f1) in $dst"

tracked=$(git ls-files -z | xargs -0 du -cb 2>/dev/null | tail -1 | cut -f1 || true)
untracked=$(git ls-files -z --others --exclude-standard | xargs -0 -r du -cb 2>/dev/null | tail -1 | cut -f1 || true)
carried=$(du -cb .devsite data/FashionMNIST | tail -1 | cut -f1)
total=$(( ${tracked:-0} + ${untracked:-0} + carried ))
echo "a run call carries about $(( total / 1048576 )) MiB (limit 64 MiB): working tree $(( (${tracked:-0} + ${untracked:-0}) / 1048576 )) MiB, .devsite + data/FashionMNIST $(( carried / 1048576 )) MiB"
if [ "$total" -ge $(( 64 * 1048576 )) ]; then echo "too large for one run call" >&2; exit 1; fi
