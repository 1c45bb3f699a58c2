"""Readers turning user DFT data into validated :class:`Frame` lists.

All readers share one path: parse the file with ASE (any parse failure
becomes a :class:`DataError` naming the file), take labels from the attached
single-point results only where present (absent -> None), attach the fidelity
and validate each frame (errors name ``path:frame_index``).

Energy is ASE's ``energy`` result; for VASP output that is energy(sigma->0)
(``e_0_energy``), not the force-consistent ``free_energy``. Units are ASE's:
eV, eV/Å, eV/Å^3 (ASE sign, Voigt xx yy zz yz xz xy), μB.
"""

from __future__ import annotations

import io
import os
import re
import xml.parsers.expat
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import ase
import ase.db
import ase.io
from ase.io.formats import open_with_compression, string2index

from .frame import DataError, Frame

PathLike = str | os.PathLike


def _load(path: PathLike, parse: Callable[[Path], list]) -> list:
    """Run ``parse(path)``; a missing file raises FileNotFoundError, any parse
    failure or an empty result raises DataError naming the file."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        items = list(parse(path))
    except DataError:
        raise
    except Exception as err:  # corrupt/truncated input: ASE raises many types
        raise DataError(f"{path}: cannot parse: {type(err).__name__}: {err}") from err
    if not items:
        raise DataError(f"{path}: no frames found")
    return items


def _frame(atoms: ase.Atoms, source: str, fidelity: str | None,
           meta: dict[str, Any], fidelity_key: str | None) -> Frame:
    """Labels from ``atoms.calc.results`` (magmoms also from the per-atom
    array ``magmoms``; never ``initial_magmoms``, which are inputs);
    fidelity from the argument, else ``meta[fidelity_key]``."""
    results = atoms.calc.results if atoms.calc is not None else {}
    if fidelity is None and fidelity_key is not None and meta.get(fidelity_key) is not None:
        fidelity = str(meta[fidelity_key])
    if fidelity is None:
        where = f" or set the {fidelity_key!r} key" if fidelity_key else ""
        raise DataError(f"{source}: no fidelity; pass fidelity=...{where}")
    magmoms = results.get("magmoms", atoms.arrays.get("magmoms"))
    return Frame(atoms=atoms.copy(), fidelity=fidelity, energy=results.get("energy"),
                 forces=results.get("forces"), stress=results.get("stress"),
                 magmoms=magmoms, source=source).validate()


def _frames(items: Iterable[tuple[str, ase.Atoms, dict]], fidelity: str | None,
            fidelity_key: str | None = None) -> list[Frame]:
    return [_frame(atoms, source, fidelity, meta, fidelity_key) for source, atoms, meta in items]


def _in_memory(path: Path) -> io.StringIO:
    """The decompressed text of ``path``: ASE's extxyz reader seeks back to every frame, which on a
    gzip stream re-decompresses from the start (quadratic in the number of frames)."""
    with open_with_compression(str(path), "r") as fh:
        return io.StringIO(fh.read())


def read_extxyz(path: PathLike, fidelity: str | None = None, fidelity_key: str = "fidelity",
                index: str | int | slice = ":") -> list[Frame]:
    """Frames of an (optionally .gz/.bz2/.xz compressed) extended XYZ file.

    ``fidelity`` overrides the per-frame ``atoms.info[fidelity_key]``.
    ``index`` selects frames as in ``ase.io.read``; sources keep the frame's
    position in the file.
    """
    images = _load(path, lambda p: ase.io.read(_in_memory(p), ":", format="extxyz"))
    picked = range(len(images))[string2index(index) if isinstance(index, str) else index]
    picked = [picked] if isinstance(picked, int) else picked
    return _frames(((f"{path}:{i}", images[i], images[i].info) for i in picked),
                   fidelity, fidelity_key)


def read_ase_db(path: PathLike, fidelity: str | None = None, fidelity_key: str = "fidelity",
                selection: Any = None) -> list[Frame]:
    """Frames of the rows of an ASE database matching ``selection``.

    Fidelity from the argument, else the row's key-value pair
    ``fidelity_key``. Sources are ``path:row_id``.
    """
    rows = _load(path, lambda p: ase.db.connect(str(p)).select(selection))
    return _frames(((f"{path}:{row.id}", row.toatoms(), row.key_value_pairs) for row in rows),
                   fidelity, fidelity_key)


def _parse_vasprun(path: Path) -> list[ase.Atoms]:
    # ASE stops silently at the first XML error (yielding the steps before it);
    # a truncated or corrupt vasprun must be an error instead.
    with open_with_compression(str(path), "rb") as fd:
        xml.parsers.expat.ParserCreate().ParseFile(fd)
    return ase.io.read(path, ":", format="vasp-xml")


def _read_vasp(path: PathLike, fidelity: str | None, parse: Callable[[Path], list]) -> list[Frame]:
    if fidelity is None:
        raise DataError(f"{path}: VASP output carries no fidelity name; pass fidelity=...")
    images = _load(path, parse)
    return _frames(((f"{path}:{i}", atoms, {}) for i, atoms in enumerate(images)), fidelity)


def read_vasprun(path: PathLike, fidelity: str) -> list[Frame]:
    """Every ionic step of a ``vasprun.xml`` (optionally compressed).

    Parsed with ASE's vasp-xml reader, which converts VASP's stress (kBar,
    positive = compressive) to ASE's: ``stress_ase = -0.1 * GPa * stress_kbar``
    in Voigt order. vasprun.xml has no per-step magnetic moments: magmoms None.
    """
    return _read_vasp(path, fidelity, _parse_vasprun)


def read_outcar(path: PathLike, fidelity: str) -> list[Frame]:
    """Every ionic step of an ``OUTCAR`` (optionally compressed), stress
    converted as in :func:`read_vasprun`; magmoms when the OUTCAR prints
    ``magnetization (x)`` (collinear only; a non-collinear run is rejected).
    A trailing, unfinished ionic step (killed run) is dropped as ASE does; the
    completed steps before it are returned."""
    return _read_vasp(path, fidelity, lambda p: ase.io.read(p, ":", format="vasp-out"))


_COMPRESSION = r"(\.(gz|bz2|xz))?"
_READERS: list[tuple[str, Callable[..., list[Frame]]]] = [
    (rf".*\.(ext)?xyz{_COMPRESSION}", read_extxyz),
    (r".*\.db", read_ase_db),
    (rf"vasprun.*\.xml{_COMPRESSION}", read_vasprun),
    (r"OUTCAR.*", read_outcar),
]


def read_frames(path: PathLike, fidelity: str | None = None, **kwargs: Any) -> list[Frame]:
    """Read frames with the reader chosen by file name: ``*.xyz``/``*.extxyz``
    (optionally .gz/.bz2/.xz), ``*.db``, ``vasprun*.xml``, ``OUTCAR*``.
    ``fidelity`` (required for VASP output) overrides any per-frame key;
    other keyword arguments go to the reader."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{path}: no such file")
    name = Path(path).name
    for pattern, reader in _READERS:
        if re.fullmatch(pattern, name):
            return reader(path, fidelity=fidelity, **kwargs)
    raise DataError(f"{path}: unknown data file type; expected *.xyz, *.extxyz (optionally "
                    ".gz/.bz2/.xz), *.db, vasprun*.xml or OUTCAR*")
