#!/usr/bin/env bash
# The installed-wheel smoke test: build the wheel, install it (with CHGNet) into a fresh venv, and
# use it from a directory outside the repository: import the shipped sample, run, summarise, relax a
# few crystals and print the study, draw
# figures, write the report, open the app headless. Nothing of the checkout is on the path.
set -euo pipefail
repo="$(cd "$(dirname "$0")/.." && pwd)"
work="$(mktemp -d /tmp/mliap-wheel-smoke.XXXXXX)"
trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
"$work/venv/bin/python" -m pip install -q --upgrade pip
"$work/venv/bin/pip" install -q torch==2.13.0
"$work/venv/bin/pip" wheel -q --no-deps -w "$work/dist" "$repo"
wheel="$(ls "$work"/dist/mliap_tui-*.whl)"
"$work/venv/bin/pip" install -q "${wheel}[chgnet,figures]"
cd "$work"   # outside the repository
export PATH="$work/venv/bin:$PATH" MLIAP_TUI_CACHE="$work/cache" COLUMNS=80
python -c "import mliap_tui, sys; assert 'site-packages' in mliap_tui.__file__, mliap_tui.__file__; print('imported from', mliap_tui.__file__)"
mliap-tui --version
mliap-tui data import sample --limit 30 --jobs 1
mliap-tui run --data sample --models chgnet-0.3.0 --limit 20
mliap-tui summary --data sample --by dof
mliap-tui run --data sample --models chgnet-0.3.0 --limit 5 --mode relax --torch-threads 1
mliap-tui study dof --data sample
mliap-tui export --data sample "$work/out.csv"
test "$(wc -l < "$work/out.csv")" -eq 21
mliap-tui figures --data sample --out "$work/figs" --no-pes
test -s "$work/figs/parity_e_above_hull_chgnet-0.3.0.png"
mliap-tui report --data sample --out "$work/report.html"
grep -q "chgnet-0.3.0" "$work/report.html"
python - <<'PY'
import asyncio
from mliap_tui.cache import Cache
from mliap_tui.tui.app import MliapTuiApp
from mliap_tui.tui.explore import ExploreScreen

async def main():
    app = MliapTuiApp(Cache.open(), device_poll_s=None)
    async with app.run_test(size=(80, 24)) as pilot:
        for _ in range(100):
            await pilot.pause(0.1)
            if isinstance(app.screen, ExploreScreen) and app.screen.data is not None:
                break
        assert isinstance(app.screen, ExploreScreen) and app.screen.data is not None, "the explorer did not load"
        print(f"app opened: {app.screen.dataset}, {app.screen.data.n_materials} materials")
        await pilot.press("q")

asyncio.run(main())
PY
echo "wheel smoke test passed: $wheel"
