"""Synesthesia's core: models, pipelines, media I/O and the model store.

Host-free: nothing here imports ComfyUI or Blender. Heavy libraries (transformers, diffusers,
av) are imported inside the functions that need them so that ``import synesthesia`` stays fast.
"""
