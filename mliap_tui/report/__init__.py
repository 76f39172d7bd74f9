"""Figures and reports: what leaves the terminal (matplotlib figures, a self-contained HTML report)."""
