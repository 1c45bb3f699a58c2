"""Constants and a settings helper shared across layers, each defined once."""

from ase import units

#: CHGNet's element embedding covers H..Pu (atomic numbers 1..94).
MAX_Z = 94
#: shipped name of each pretrained CHGNet warm start -> (chgnet's model name, the fidelity it is taken as)
WARM_STARTS = {"chgnet-0.3.0": ("0.3.0", ("pbe_u",)), "chgnet-r2scan": ("r2scan", ("r2scan",))}
#: eV/Å³ -> GPa (160.2177).
EV_A3_TO_GPA = 1.0 / units.GPa


def dataclass_from_dict(cls, data: dict, what: str):
    """``cls(**data)`` for a dataclass ``cls``; a key it does not know raises ValueError naming ``what``."""
    from dataclasses import fields

    unknown = set(data) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"unknown {what} key(s) {sorted(unknown)}")
    return cls(**data)
