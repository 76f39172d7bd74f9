#!/usr/bin/env bash
# Pass 4: each family's adapter against the family's own ASE calculator, on small models built at
# test time (tests/functional/test_family_adapters.py), in one venv per family: their pins clash
# with the main venv (mace-torch pins e3nn==0.4.4, which makes pip pick sevenn 0.10; orb-models
# pins rich<14, which breaks textual), so the main suite skips these tests and this pass runs them.
# FAMILIES="mace matgl orb" (default) selects which.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/mliap-family-adapters.XXXXXX)"
trap 'rm -rf "$work"' EXIT
export MLIAP_TUI_HASH_MEMO="$work/file-sha256.json"
for family in ${FAMILIES:-mace matgl orb}; do
  echo "--- $family ---"
  python3 -m venv "$work/$family"
  py="$work/$family/bin/python"
  "$py" -m pip install -q --upgrade pip
  "$py" -m pip install -q torch==2.13.0      # the local CPU build; any other torch spec pulls GBs
  if [ "$family" = orb ]; then
    # mliap-tui's compute layers only (no rich/textual), next to orb-models, as README's orb venv
    "$py" -m pip install -q "orb-models>=0.5" pytest numpy polars pyarrow pymatgen spglib ase scipy psutil
    "$py" -m pip install -q --no-deps -e "$repo"
  else
    "$py" -m pip install -q -e "$repo[$family]" pytest
  fi
  (cd "$repo" && "$py" -m pytest -q -p no:cacheprovider -rs tests/functional/test_family_adapters.py -k "$family")
done
