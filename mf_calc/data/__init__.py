"""User DFT data -> labelled, fidelity-tagged frames."""

from .frame import DataError, Frame
from .readers import read_ase_db, read_extxyz, read_frames, read_outcar, read_vasprun

__all__ = ["DataError", "Frame", "read_ase_db", "read_extxyz", "read_frames", "read_outcar",
           "read_vasprun"]
