"""Recipes that run a job end to end (see DESIGN.md): here, the ``sparsecap sweep`` grid of methods × sparsities."""
