"""Build sample_data/forces/ from the real reference data in ../shared/data (run once; committed).

* ``mptrj_5_frames.extxyz``: the first 5 MPtrj frames of ``mptrj/mptrj_10_systems.db`` (DFT
  energies and forces, off-equilibrium; orb-models test fixture, Apache-2.0).
* ``Vacancy-RE_sample/``: the first 8 cells of the Si vacancy-migration rare-event testing set
  (Liu, He, Mo, npj Comput. Mater. 9, 174 (2023); mogroupumd/Silicon_MLIP_datasets), in the set's
  own layout (DATA.json with the DFT_K4 energies and forces and the per-atom distances r, r_v;
  structure_poscars.zip), so the same reader imports it.

    python scripts/make_force_sample.py [--shared ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
N_FRAMES, N_CELLS = 5, 8


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", default=str(REPO.parent / "shared" / "data"))
    args = ap.parse_args()
    shared, out = Path(args.shared), REPO / "sample_data" / "forces"
    out.mkdir(parents=True, exist_ok=True)

    from ase.db import connect
    from ase.io import write

    frames = [row.toatoms(add_additional_information=False) for row in connect(shared / "mptrj" / "mptrj_10_systems.db").select()]
    write(out / "mptrj_5_frames.extxyz", frames[:N_FRAMES], format="extxyz")

    src = shared / "si_re" / "Vacancy-RE_Testing_Set"
    data = json.loads((src / "DATA.json").read_text())
    sub = {
        "Energies": {"DFT_K4": data["Energies"]["DFT_K4"][:N_CELLS]},
        "Forces": {"DFT_K4": data["Forces"]["DFT_K4"][:N_CELLS]},
        "r": data["r"][:N_CELLS],
        "r_v": data["r_v"][:N_CELLS],
    }
    dest = out / "Vacancy-RE_sample"
    dest.mkdir(exist_ok=True)
    (dest / "DATA.json").write_text(json.dumps(sub, separators=(",", ":")))
    with zipfile.ZipFile(src / "structure_poscars.zip") as zin, zipfile.ZipFile(dest / "structure_poscars.zip", "w", zipfile.ZIP_DEFLATED) as zout:
        for name in zin.namelist():
            stem = name.rsplit("/", 1)[-1].split(".")[0]
            if stem.isdigit() and int(stem) < N_CELLS:
                zout.writestr(f"{int(stem)}.POSCAR.vasp", zin.read(name))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
