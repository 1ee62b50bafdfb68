"""The generation pipeline: A1111 v1.10's fixed stage order (`pipeline.run`), with techniques plugged in at named
hooks. `technique` explains how to write a technique (the hook table); `job` holds one generation's settings and
stage results; `inpaintlab.techniques` holds the built-in ones. Each name is imported on first use, so that a
technique module importing `pipeline.job` or `pipeline.technique` may be the first module anyone imports."""
from .._lazy import lazy_package

lazy_package(__name__, {
    "Job": ".job", "HOOKS": ".technique", "CFGParts": ".technique", "Technique": ".technique",
    "TechniqueError": ".technique", "VERSION_TAG": ".load", "PipelineConfig": ".load", "load": ".load",
    "Pipeline": ".pipeline", "run": ".pipeline", "Result": "inpaintlab.result",
})

__all__ = ["CFGParts", "HOOKS", "Job", "Pipeline", "PipelineConfig", "Result", "Technique", "TechniqueError",
           "VERSION_TAG", "load", "run"]
