"""Matplotlib figures for the workflows, made without pyplot (no global backend state is touched,
so this is safe in scripts, on headless machines and inside a user's Jupyter session)."""

from __future__ import annotations


def new_figure(**kwargs):
    """A ``matplotlib.figure.Figure`` that can ``savefig`` without pyplot."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def save_figure(fig, png_path, dpi: int = 110) -> str:
    """Lay out ``fig`` tightly and write it to ``png_path``; returns the path as a string."""
    fig.tight_layout()
    fig.savefig(png_path, dpi=dpi)
    return str(png_path)
