#!/usr/bin/env bash
# Set up everything the book and the tests need, once: a virtual environment with the locked
# packages, the package itself (editable), the Jupyter kernel, and the Fashion-MNIST files.
# Running it again reuses what is there and returns in about a second.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=${VENV:-.venv}
STAMP="$VENV/.rni-stamp"
want=$(cat requirements/lock.txt pyproject.toml tools/bootstrap.sh | sha256sum | cut -c1-16)

if [ ! -x "$VENV/bin/python" ]; then
  echo "[bootstrap] creating virtual environment $VENV"
  "$PYTHON" -m venv "$VENV"
fi

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "[bootstrap] installing locked packages (torch 2.14.1 / torchvision 0.29.1 come from local disk)"
  pip_q() { "$VENV/bin/python" -m pip install -q --disable-pip-version-check "$@" 2>&1 \
            | grep -v "^WARNING: Location 'file:" || true; }
  pip_q -r requirements/lock.txt
  # torchattacks pins an old `requests`: installed on its own, without its dependencies.
  pip_q --no-deps torchattacks==3.5.1
  pip_q --no-deps --no-build-isolation -e .
  "$VENV/bin/python" -c "import torch, torchvision, robust_utils, papermill, nbval" \
    || { echo "[bootstrap] the environment is incomplete: see the pip output above" >&2; exit 1; }
  # Register the venv's interpreter as the `python3` kernel that papermill and nbval use.
  "$VENV/bin/python" -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (robust-nn)" >/dev/null
  echo "$want" > "$STAMP"
else
  echo "[bootstrap] environment up to date ($VENV)"
fi

# Fashion-MNIST: the data cache, else Debian's package (installed here when apt is available).
DEB=/usr/share/datasets/fashion-mnist
if ! ls data/FashionMNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1 \
   && [ ! -f "$DEB/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] installing Debian's dataset-fashion-mnist"
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[bootstrap] Fashion-MNIST not found. Install it with 'sudo apt-get install dataset-fashion-mnist'," \
         "or put the four IDX files under data/FashionMNIST/raw/, or run online so torchvision can download it." >&2
  fi
fi
