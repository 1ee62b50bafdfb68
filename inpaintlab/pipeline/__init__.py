"""The generation pipeline: A1111 v1.10's fixed stage order, with techniques plugged in at named hooks.

`inpaintlab.pipeline.technique` explains how to write a technique (the hook table); `job` holds one generation's
settings and stage results.
"""
from .job import Job
from .technique import HOOKS, CFGParts, Technique, TechniqueError

__all__ = ["CFGParts", "HOOKS", "Job", "Technique", "TechniqueError"]
