"""Scoring a pipeline on a manifest split: every member, both ensembles, and the shortcut probe."""
