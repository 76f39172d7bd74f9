"""The project's vocabulary: every name that more than one layer uses, defined once.

Names are ``StrEnum`` members, so they compare equal to (and serialise as) their plain string
values: ``Mode.STATIC == "static"``; the cache and the worker protocol store the strings.
Each enum has a human ``label`` for screens and tables.
"""

from __future__ import annotations

from enum import StrEnum

# ---- defaults shared by several layers ---------------------------------------------------------

#: spglib distance tolerance (Å): the Materials Project's default, used by import and relax mode.
DEFAULT_SYMPREC_ANG = 0.1
#: spglib angle tolerance (degrees), as pymatgen and the Materials Project use it.
DEFAULT_ANGLE_TOLERANCE_DEG = 5.0
#: "near the hull": DFT energy above hull below this (eV/atom).
NEAR_HULL_EV_PER_ATOM = 0.050
#: Two atoms closer than this (Å, periodic images included) make a structure unusable.
DEFAULT_MIN_DISTANCE_ANG = 0.5
#: Relax mode converges when every atom force and cell-gradient row is below this (eV/Å), as ASE's fmax.
DEFAULT_RELAX_FMAX_EV_PER_ANG = 0.05
#: Relax mode stops a structure after this many FIRE steps (its row says it did not converge).
DEFAULT_RELAX_MAX_STEPS = 500
#: Relax mode fails a structure whose cell volume leaves [1/4, 4] x its starting volume.
RELAX_MAX_VOLUME_RATIO = 4.0
#: Import refuses cells denser than this (Å^3 per atom; the densest MP crystals have ~5-6).
DEFAULT_MIN_VOLUME_PER_ATOM_ANG3 = 2.0
#: Import refuses cells with more atoms than this (configurable: --max-atoms).
DEFAULT_MAX_ATOMS = 2000
#: Import refuses lattice vectors longer than this (Å): no crystal of interest needs one.
MAX_LATTICE_LENGTH_ANG = 1000.0


# ---- crystal systems ---------------------------------------------------------------------------


class CrystalSystem(StrEnum):
    TRICLINIC = "triclinic"
    MONOCLINIC = "monoclinic"
    ORTHORHOMBIC = "orthorhombic"
    TETRAGONAL = "tetragonal"
    TRIGONAL = "trigonal"
    HEXAGONAL = "hexagonal"
    CUBIC = "cubic"

    @property
    def label(self) -> str:
        return self.value

    @property
    def abbrev(self) -> str:
        """Short form for narrow table columns (at most 8 characters)."""
        return _CS_ABBREV[self]


_CS_ABBREV = {
    CrystalSystem.TRICLINIC: "tricl.",
    CrystalSystem.MONOCLINIC: "monocl.",
    CrystalSystem.ORTHORHOMBIC: "orthorh.",
    CrystalSystem.TETRAGONAL: "tetrag.",
    CrystalSystem.TRIGONAL: "trigonal",
    CrystalSystem.HEXAGONAL: "hexag.",
    CrystalSystem.CUBIC: "cubic",
}
#: In order of rising symmetry, as plain strings.
CRYSTAL_SYSTEMS: tuple[str, ...] = tuple(cs.value for cs in CrystalSystem)


# ---- evaluation modes, precisions, statuses ------------------------------------------------------


class Mode(StrEnum):
    STATIC = "static"  # single point on the DFT structure
    RELAX = "relax"  # FIRE + Fréchet cell filter relaxation, then a single point

    @property
    def label(self) -> str:
        return {"static": "static (DFT geometry)", "relax": "relaxed by the model"}[self.value]


MODES: tuple[str, ...] = tuple(m.value for m in Mode)


class RelaxEngine(StrEnum):
    """How relax mode runs FIRE on a Fréchet cell filter (the same algorithm and convergence rule)."""

    BATCHED = "batched"  # many structures at once through the batched adapter (engine/relax.py)
    ASE = "ase"  # one structure at a time, ASE's FIRE(FrechetCellFilter) on the family's calculator

    @property
    def label(self) -> str:
        return {"batched": "batched (in-flight)", "ase": "ASE, one structure at a time"}[self.value]


RELAX_ENGINES: tuple[str, ...] = tuple(e.value for e in RelaxEngine)


class RelaxStatus(StrEnum):
    """How one relaxation ended."""

    CONVERGED = "converged"  # max filter force (atoms and cell) below fmax
    MAX_STEPS = "max_steps"  # stopped at the step cap before converging (the row is still ok)
    FAILED = "failed"  # diverged, or the model failed on it: a failed row with the reason


class DType(StrEnum):
    FLOAT32 = "float32"
    FLOAT64 = "float64"

    @property
    def label(self) -> str:
        return self.value


DTYPES: tuple[str, ...] = tuple(d.value for d in DType)


class Status(StrEnum):
    OK = "ok"
    FAILED = "failed"


class FailureKind(StrEnum):
    """Why one structure got a ``failed`` row (the run goes on)."""

    INVALID = "invalid"  # the row could not be turned into a sane structure
    UNSUPPORTED = "unsupported"  # elements outside the model's coverage
    OOM = "oom"  # out of memory even alone
    EXCEPTION = "exception"  # the model raised on this structure alone
    NON_FINITE = "non_finite"  # NaN/inf energy, forces or stress
    DIVERGED = "diverged"  # relaxation: exploding cell, collapsing atoms

    @property
    def label(self) -> str:
        return _FAILURE_LABEL[self]


_FAILURE_LABEL = {
    FailureKind.INVALID: "invalid structure",
    FailureKind.UNSUPPORTED: "element not covered",
    FailureKind.OOM: "out of memory",
    FailureKind.EXCEPTION: "model raised",
    FailureKind.NON_FINITE: "NaN/inf output",
    FailureKind.DIVERGED: "relaxation diverged",
}


class WorkerErrorKind(StrEnum):
    """Why a whole worker (one model) stopped."""

    MODEL_UNAVAILABLE = "model_unavailable"
    BAD_JOB = "bad_job"
    SYSTEMATIC_FAILURE = "systematic_failure"
    CRASHED = "crashed"
    EXCEPTION = "exception"
    WRITE_FAILED = "write_failed"
    MODEL_REFUSED = "model_refused"  # the load-time checks refused the weights (canary, old matgl save)

    @property
    def label(self) -> str:
        return self.value.replace("_", " ")


class CanaryVerdict(StrEnum):
    """Outcome of the load-time canary check of a model's weights (``mliap_tui.models.canary``)."""

    PASSED = "passed"  # MAE on the canary crystals within the limit
    FAILED = "failed"  # far beyond any published uMLIP: refused unless --trust-model
    UNCHECKED = "unchecked"  # cannot be judged here (r2SCAN energies, too few crystals covered)


class Verification(StrEnum):
    """How a model family's numbers are known to be right on this machine (``mliap-tui models``)."""

    REAL_WEIGHTS = "real weights"  # the published weights passed the canary here
    STRUCTURAL = "structural"  # adapter checked against the family's ASE calculator on a small built model
    REFUSED = "refused"  # these weights failed the canary here
    NONE = "none"  # not checked yet


class EnergyConvention(StrEnum):
    """Which DFT energies a model was trained on (see docs/ARCHITECTURE.md, "Energies")."""

    MP2020 = "mp2020"  # MP2020-corrected GGA/GGA+U (CHGNet)
    RAW_PBE = "raw_pbe"  # uncorrected PBE(+U): the MP2020 correction is added before comparing
    R2SCAN = "r2scan"  # r2SCAN: not comparable with the PBE hull

    @property
    def label(self) -> str:
        return {"mp2020": "MP2020-corrected", "raw_pbe": "raw PBE", "r2scan": "r2SCAN"}[self.value]

    @property
    def not_compared_because(self) -> str | None:
        """Why predictions on this convention are not compared with MP's DFT (None: they are)."""
        return "r2SCAN energies are not compared with the PBE hull" if self is EnergyConvention.R2SCAN else None


# ---- relaxation: what happened to the symmetry ---------------------------------------------------


class SymmetryChange(StrEnum):
    """Space group of the model-relaxed cell against the DFT one (``symmetry.symmetry_change``).

    Decided by the number of symmetry operations spglib finds for the cell as given (pure
    translations of a supercell included): relaxation keeps the cell's atoms, so a subgroup has
    strictly fewer operations and a supergroup strictly more.
    """

    KEPT = "kept"  # same space group, same operations
    LOWERED = "lowered"  # fewer operations: the model broke symmetry
    RAISED = "raised"  # more operations: the model made the cell more symmetric
    CHANGED = "changed"  # another group with as many operations (neither contains the other)
    UNKNOWN = "unknown"  # spglib could not analyse one of the two cells

    @property
    def label(self) -> str:
        return self.value


SYMMETRY_CHANGES: tuple[str, ...] = tuple(c.value for c in SymmetryChange)


# ---- metrics -----------------------------------------------------------------------------------


class Metric(StrEnum):
    E_PER_ATOM = "e_per_atom"
    E_FORM_PER_ATOM = "e_form_per_atom"
    E_ABOVE_HULL = "e_above_hull"
    E_ABOVE_HULL_REBUILT = "e_above_hull_rebuilt"

    @property
    def label(self) -> str:
        return METRIC_LABEL[self.value]

    @property
    def short_label(self) -> str:
        return METRIC_SHORT_LABEL[self.value]

    @property
    def columns(self) -> tuple[str, str, str]:
        """(DFT column, predicted column, signed-error column) of the tidy error table."""
        return METRICS[self.value]


#: metric -> (DFT column, predicted column, signed-error column). All eV/atom, MP2020 convention.
METRICS: dict[str, tuple[str, str, str]] = {
    "e_per_atom": ("e_per_atom_dft_mp2020", "e_per_atom_pred_mp2020", "d_e_per_atom"),
    "e_form_per_atom": ("e_form_per_atom_dft_mp2020", "e_form_per_atom_pred", "d_e_form_per_atom"),
    "e_above_hull": ("e_above_hull_dft_mp2020", "e_above_hull_pred_fixed", "d_e_above_hull"),
    "e_above_hull_rebuilt": ("e_above_hull_dft_rebuilt", "e_above_hull_pred_rebuilt", "d_e_above_hull_rebuilt"),
}
#: Long labels (plot titles, status lines).
METRIC_LABEL: dict[str, str] = {
    "e_per_atom": "total energy",
    "e_form_per_atom": "formation energy",
    "e_above_hull": "Ehull (fixed DFT hull)",
    "e_above_hull_rebuilt": "Ehull (rebuilt hull)",
}
#: Short labels (table cells).
METRIC_SHORT_LABEL: dict[str, str] = {
    "e_per_atom": "E",
    "e_form_per_atom": "Eform",
    "e_above_hull": "Ehull (DFT hull)",
    "e_above_hull_rebuilt": "Ehull rebuilt",
}
#: Symbols (narrow table headers).
METRIC_SYMBOL: dict[str, str] = {
    "e_per_atom": "E",
    "e_form_per_atom": "Eform",
    "e_above_hull": "Ehull",
    "e_above_hull_rebuilt": "Ehull(b)",
}
#: What a user may type for a metric (filter language, --metric), lower case.
METRIC_ALIASES: dict[str, str] = {
    "e": "e_per_atom",
    "etot": "e_per_atom",
    "e_per_atom": "e_per_atom",
    "eform": "e_form_per_atom",
    "e_form": "e_form_per_atom",
    "e_form_per_atom": "e_form_per_atom",
    "ehull": "e_above_hull",
    "e_above_hull": "e_above_hull",
    "ehull_rebuilt": "e_above_hull_rebuilt",
    "e_above_hull_rebuilt": "e_above_hull_rebuilt",
}
#: The shortest alias of each metric (how the filter language writes it back).
METRIC_SHORT: dict[str, str] = {
    "e_per_atom": "e",
    "e_form_per_atom": "eform",
    "e_above_hull": "ehull",
    "e_above_hull_rebuilt": "ehull_rebuilt",
}
#: Metrics read straight from the cache (the rebuilt-hull one needs hulls computed).
CHEAP_METRICS: tuple[str, ...] = ("e_per_atom", "e_form_per_atom", "e_above_hull")

# ---- groupings and DOF columns ---------------------------------------------------------------

#: ``--by`` groupings of the summary and the study view -> their labels.
GROUPINGS: dict[str, str] = {
    "dof": "total DOF",
    "crystal_system": "crystal system",
    "spacegroup": "space group",
    "element": "element",
    "near_hull": "DFT Ehull band",
}
#: Groupings of the study view (``mliap-tui study dof --by``, the Study screen), in cycling order.
STUDY_GROUPINGS: tuple[str, ...] = ("dof", "crystal_system", "near_hull")
#: Views of the study: static errors, relaxed errors, and relaxed minus static on the same crystals.
STUDY_VIEWS: dict[str, str] = {
    "static": "static (DFT geometry)",
    "relax": "relaxed by the model",
    "difference": "relaxed - static",
}
#: Lower edges of the total-DOF bins: [1,2], [3,5], [6,9], [10,14], [15,19], [20,29], [30,...).
DOF_BIN_EDGES: tuple[int, ...] = (1, 3, 6, 10, 15, 20, 30)
#: The two groups of the near-hull grouping (DFT Ehull below / at or above NEAR_HULL_EV_PER_ATOM).
NEAR_HULL_GROUPS: tuple[str, str] = ("near hull", "above")
#: DOF columns of the materials table -> labels.
DOF_LABELS: dict[str, str] = {
    "total_dof": "total DOF",
    "lattice_dof": "lattice DOF",
    "wyckoff_dof": "Wyckoff DOF",
    "polar_dof": "polar DOF",
}

__all__ = [
    "CHEAP_METRICS",
    "CRYSTAL_SYSTEMS",
    "DEFAULT_ANGLE_TOLERANCE_DEG",
    "DEFAULT_MIN_DISTANCE_ANG",
    "DEFAULT_RELAX_FMAX_EV_PER_ANG",
    "DEFAULT_RELAX_MAX_STEPS",
    "DEFAULT_SYMPREC_ANG",
    "DOF_BIN_EDGES",
    "DOF_LABELS",
    "DTYPES",
    "GROUPINGS",
    "METRICS",
    "METRIC_ALIASES",
    "METRIC_LABEL",
    "METRIC_SHORT",
    "METRIC_SHORT_LABEL",
    "MODES",
    "NEAR_HULL_EV_PER_ATOM",
    "NEAR_HULL_GROUPS",
    "STUDY_GROUPINGS",
    "STUDY_VIEWS",
    "SYMMETRY_CHANGES",
    "RELAX_ENGINES",
    "RELAX_MAX_VOLUME_RATIO",
    "CrystalSystem",
    "DType",
    "EnergyConvention",
    "FailureKind",
    "Metric",
    "Mode",
    "RelaxEngine",
    "RelaxStatus",
    "Status",
    "SymmetryChange",
    "WorkerErrorKind",
]
