"""Registered pipeline presets: name -> {"metadata": {...}, "handle": ...}.

A handle is a local folder or "hf://owner/repo@revision". Each metadata says
whether trained weights exist behind the handle, so nothing pretends.
"""

PIPELINE_PRESETS = {}
