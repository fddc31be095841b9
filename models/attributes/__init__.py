"""Garment attributes: the taxonomy (a data file), colour naming from pixels, zero-shot scoring,
text refinement."""
