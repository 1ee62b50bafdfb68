"""The generation pipeline: A1111 v1.10's fixed stage order (`pipeline.run`), with techniques plugged in at named
hooks. `technique` explains how to write a technique (the hook table); `job` holds one generation's settings and
stage results; `inpaintlab.techniques` holds the built-in ones."""
from .job import Job
from .technique import HOOKS, CFGParts, Technique, TechniqueError
from .load import VERSION_TAG, PipelineConfig, load
from .pipeline import Pipeline, run
from ..result import Result

__all__ = ["CFGParts", "HOOKS", "Job", "Pipeline", "PipelineConfig", "Result", "Technique", "TechniqueError",
           "VERSION_TAG", "load", "run"]
