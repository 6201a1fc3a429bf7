"""Preprocessing shared by training and inference, so the two cannot drift."""
