"""Teacher-labelled frames: labels predicted by a model, for benchmarks and tests where DFT is too
costly (the DESIGN's stand-in for LMFP DFT data). Say so wherever results on such data are shown."""

from __future__ import annotations

from collections.abc import Sequence

from ase.stress import full_3x3_to_voigt_6_stress

from mf_calc.data import Frame


def teacher_frames(model, atoms_list: Sequence, fidelity: str, model_fidelity: str | int | None = None,
                   labels: str = "efsm", batch_size: int = 8) -> list[Frame]:
    """Frames of fidelity ``fidelity`` labelled by ``model`` at ``model_fidelity`` (default: the highest).

    ``labels`` picks which of e, f, s, m are kept; the others stay None (missing, as in real data).
    """
    preds = model.predict(list(atoms_list), fidelity=model_fidelity, task="efsm", batch_size=batch_size)
    frames = []
    for k, (atoms, p) in enumerate(zip(atoms_list, preds)):
        frames.append(Frame(
            atoms=atoms.copy(), fidelity=fidelity,
            energy=float(p["energy"]) if "e" in labels else None,
            forces=p["forces"] if "f" in labels else None,
            stress=full_3x3_to_voigt_6_stress(p["stress"]) if "s" in labels else None,
            magmoms=p["magmoms"] if "m" in labels else None,
            source=f"teacher:{fidelity}:{k}",
        ).validate())
    return frames
