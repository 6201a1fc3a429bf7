"""Explanations of the classifiers' decisions."""
