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

# apt-get that waits for the apt/dpkg locks when another apt process (unattended-upgrades, a
# second set-up) holds them, instead of failing the set-up: at most APT_LOCK_TIMEOUT seconds
# (default 600) per command, saying who holds the lock. DPkg::Lock::Timeout (apt >= 1.9.11) makes
# apt itself wait for the dpkg lock; `apt-get update`'s lists lock (and an older apt) are waited
# for by retrying while apt reports a held lock.
APT_LOCK_TIMEOUT=${APT_LOCK_TIMEOUT:-600}
apt_get() {
  local deadline=$(( $(date +%s) + APT_LOCK_TIMEOUT )) err rc next_note=0 now holders
  err=$(mktemp)
  while :; do
    now=$(date +%s)
    if [ "$now" -ge "$next_note" ] && command -v fuser >/dev/null 2>&1 \
       && holders=$(fuser /var/lib/dpkg/lock-frontend /var/lib/dpkg/lock /var/lib/apt/lists/lock 2>/dev/null); then
      echo "[bootstrap] the apt/dpkg lock files are in use by process(es)$holders: apt-get $1 waits" \
           "for them (up to $(( deadline - now )) s)" >&2
      next_note=$(( now + 60 ))
    fi
    rc=0
    LC_ALL=C apt-get -o DPkg::Lock::Timeout=$(( deadline > now ? deadline - now : 0 )) "$@" 2>"$err" || rc=$?
    now=$(date +%s)
    if [ "$rc" != 0 ] && [ "$now" -lt "$deadline" ] \
       && grep -q -e "Could not get lock" -e "Unable to lock" -e "Unable to acquire the dpkg" "$err"; then
      if [ "$now" -ge "$next_note" ]; then
        echo "[bootstrap] waiting (up to $(( deadline - now )) s more) for the apt lock:" \
             "$(grep -m1 "Could not get lock" "$err" || head -n1 "$err")" >&2
        next_note=$(( now + 60 ))
      fi
      sleep 5
      continue
    fi
    cat "$err" >&2
    rm -f "$err"
    return "$rc"
  done
}

# Fashion-MNIST: the data cache, else Debian's package (installed here when apt is available).
DEB=/usr/share/datasets/fashion-mnist
if ! ls data/FashionMNIST/raw/train-images-idx3-ubyte* >/dev/null 2>&1 \
   && [ ! -f "$DEB/train-images-idx3-ubyte.gz" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "[bootstrap] installing Debian's dataset-fashion-mnist"
    apt_get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt_get install -y -qq dataset-fashion-mnist >/dev/null
  else
    echo "[bootstrap] Fashion-MNIST not found. Install it with 'sudo apt-get install dataset-fashion-mnist'," \
         "or put the four IDX files under data/FashionMNIST/raw/, or run online so torchvision can download it." >&2
  fi
fi
