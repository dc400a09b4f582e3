#!/usr/bin/env bash
# Create .venv and install vlmrm with its dev extras. Idempotent: a stamp holding the hash of the
# install inputs makes a second run return at once; a changed pyproject.toml re-installs.
# Torch: the pinned wheels that resolve on this kind of machine (override with VLMRM_TORCH_SPEC,
# e.g. VLMRM_TORCH_SPEC="torch torchvision --index-url https://download.pytorch.org/whl/cu128").
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.vlmrm-install-stamp"
WANT="$(cat "$ROOT/pyproject.toml" "$ROOT/scripts/bootstrap.sh" | sha256sum | cut -c1-16)"
if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$WANT" ]]; then
  exit 0
fi
case "$(uname -m)" in
  aarch64|arm64) DEFAULT_TORCH="torch==2.9.1 torchvision==0.24.1" ;;
  *) DEFAULT_TORCH="torch==2.14.1 torchvision==0.29.1" ;;
esac
echo "[bootstrap] creating $VENV (first run downloads torch; later runs are instant)" >&2
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
# shellcheck disable=SC2086
"$VENV/bin/python" -m pip install -q ${VLMRM_TORCH_SPEC:-$DEFAULT_TORCH}
"$VENV/bin/python" -m pip install -q -e "$ROOT[dev]"
echo "$WANT" > "$STAMP"
echo "[bootstrap] ready: $VENV" >&2
