"""Matplotlib figures for the workflows, made without pyplot (no global backend state is touched,
so this is safe in scripts, on headless machines and inside a user's Jupyter session)."""

from __future__ import annotations


def new_figure(**kwargs):
    """A ``matplotlib.figure.Figure`` that can ``savefig`` without pyplot."""
    from matplotlib.figure import Figure

    return Figure(**kwargs)
