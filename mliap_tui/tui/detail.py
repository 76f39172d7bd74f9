"""Detail screen of one material: structure, symmetry (Wyckoff orbits), DFT and every model."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import Screen
from textual.widgets import Footer, Header, Static

from mliap_tui.cache import Cache
from mliap_tui.core.units import format_mev
from mliap_tui.core.vocab import CHEAP_METRICS, METRICS
from mliap_tui.tui.messages import DetailFailed, DetailLoaded
from mliap_tui.tui.state import LoadedDataset, MaterialDetail, load_detail


def _num(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def structure_renderable(d: MaterialDetail) -> Group:
    row = d.row
    (a, b, c), (alpha, beta, gamma) = d.lattice_abc_ang, d.angles_deg
    head = Text.assemble(
        (d.material_id, "bold"), "  ", (row["formula"] or "?", "bold cyan"),
        f"   {row['n_sites']} sites · {row['chemsys']} · source {row['source'] or '?'}",
    )
    lattice = Table(title="lattice (stored cell)", title_justify="left", box=None, padding=(0, 1))
    for name in ("a (Å)", "b (Å)", "c (Å)", "α (°)", "β (°)", "γ (°)", "volume (Å³)"):
        lattice.add_column(name, justify="right")
    lattice.add_row(f"{a:.4f}", f"{b:.4f}", f"{c:.4f}", f"{alpha:.2f}", f"{beta:.2f}", f"{gamma:.2f}", f"{d.volume_ang3:.2f}")

    sym = d.symmetry
    if sym is None:
        symmetry = Text(f"symmetry analysis failed: {d.symmetry_error}", style="red")
        wyckoff = Text("")
    else:
        symmetry = Text.assemble(
            "space group ", (f"{sym.spacegroup_number} {sym.spacegroup_symbol}", "bold"),
            f" · {sym.crystal_system} · DOF: lattice {sym.lattice_dof} + Wyckoff {sym.wyckoff_dof} = ",
            (f"{sym.total_dof}", "bold"),
            f" (polar {sym.polar_dof}) · symprec {sym.symprec_ang:g} Å",
        )
        wyckoff = Table(box=None, padding=(0, 1))
        for name, justify in (("letter", "left"), ("mult.", "right"), ("element", "left"), ("site sym.", "left"),
                              ("free", "right"), ("atoms", "right"), ("x y z", "left")):
            wyckoff.add_column(name, justify=justify, no_wrap=name == "x y z")
        for orbit in sym.orbits:
            x, y, z = d.site_coords[orbit.site_indices[0]]
            wyckoff.add_row(orbit.letter, str(orbit.multiplicity), orbit.element, orbit.site_symmetry,
                            str(orbit.n_free), str(len(orbit.site_indices)), f"{x:.4f} {y:.4f} {z:.4f}")
        wyckoff = Group(
            Text("Wyckoff orbits: multiplicity in the conventional cell, free = free coordinates of the position, "
                 "atoms = sites of the orbit in the stored cell, x y z = fractional coordinates of its first site"),
            wyckoff,
        )
    return Group(head, Text(""), lattice, Text(""), symmetry, wyckoff)


def energies_renderable(d: MaterialDetail) -> Group:
    row = d.row
    dft = Table(title="DFT reference (MP2020-corrected, eV/atom)", title_justify="left", box=None, padding=(0, 1))
    for name in ("total energy", "formation energy", "Ehull", "MP2020 correction", "run type", "total energy origin"):
        dft.add_column(name, justify="right")
    dft.add_row(
        _num(row["e_per_atom_dft_mp2020"], ".4f"), _num(row["e_form_per_atom_dft_mp2020"], ".4f"),
        _num(row["e_above_hull_dft_mp2020"], ".4f"), _num(row["mp2020_correction_per_atom"], ".4f"),
        row["mp2020_run_type"] or "—", row["e_per_atom_dft_origin"] or "—",
    )
    models = Table(title="models: prediction (eV/atom) and error = prediction − DFT (meV/atom)", title_justify="left",
                   box=None, padding=(0, 1))
    models.add_column("model", no_wrap=True)
    models.add_column("status", no_wrap=True)
    for metric in CHEAP_METRICS:
        short = {"e_per_atom": "E", "e_form_per_atom": "Eform", "e_above_hull": "Ehull"}[metric]
        models.add_column(f"{short} pred", justify="right")
        models.add_column(f"Δ{short} meV", justify="right")
    failures = []
    if d.predictions.is_empty():
        models.add_row(Text("no model has been run on this material yet", style="dim"))
    for p in d.predictions.iter_rows(named=True):
        cells = []
        for metric in CHEAP_METRICS:
            _, pred, err = METRICS[metric]
            value, delta = p.get(pred), p.get(err)
            cells.append(_num(value, ".4f"))
            cells.append(Text("—", style="dim") if delta is None else
                         Text(format_mev(delta, signed=True), style="red" if format_mev(delta, signed=True).startswith("-") else "green"))
        status = Text(p["status"] or "?", style="red bold" if p["status"] == "failed" else "green")
        models.add_row(p["model"], status, *cells)
        if p["status"] == "failed":
            failures.append((p["model"], p["error"] or "no reason recorded"))
    parts = [dft, Text(""), models]
    if failures:
        parts.append(Text(""))
        parts.append(Text("failure reasons", style="bold red"))
        for model, reason in failures:
            parts.append(Text.assemble((f"{model}: ", "bold"), reason))
    return Group(*parts)


class DetailScreen(Screen):
    """One material in full."""

    BINDINGS = [
        Binding("escape,q,backspace", "app.pop_screen", "Back", id="detail.back"),
        Binding("p", "open_pes", "PES slice", id="detail.pes"),
    ]

    def __init__(self, cache: Cache, data: LoadedDataset, material_id: str) -> None:
        super().__init__()
        self.cache = cache
        self.data = data
        self.material_id = material_id
        self.detail: MaterialDetail | None = None

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False, icon="◇")
        with VerticalScroll(id="detail-body"):
            yield Static(f"loading {self.material_id}…", id="detail-structure")
            yield Static("", id="detail-energies")
        yield Footer(compact=True, show_command_palette=False)

    def on_mount(self) -> None:
        self.sub_title = f"{self.data.dataset} · {self.material_id}"
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        try:
            detail = load_detail(self.cache, self.data.dataset, self.material_id, self.data.predictions)
        except Exception as exc:
            self.post_message(DetailFailed(self.material_id, f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(DetailLoaded(detail))

    def on_detail_loaded(self, message: DetailLoaded) -> None:
        self.detail = message.detail
        self.query_one("#detail-structure", Static).update(structure_renderable(message.detail))
        self.query_one("#detail-energies", Static).update(energies_renderable(message.detail))

    def action_open_pes(self) -> None:
        """Open the symmetry-restricted PES slice screen of the shown material."""
        from mliap_tui.tui.pes_screen import PesScreen

        self.app.push_screen(PesScreen(self.cache, self.data.dataset, self.material_id))

    def on_detail_failed(self, message: DetailFailed) -> None:
        self.query_one("#detail-structure", Static).update(
            Text(f"could not load {message.material_id}: {message.error}", style="red"))


__all__ = ["DetailScreen", "structure_renderable", "energies_renderable"]
