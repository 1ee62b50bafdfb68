import re

from setuptools import find_packages, setup

VERSION = re.search(r'"(.+)"', open("inpaintlab/_version.py", encoding="utf-8").read()).group(1)

setup(
    name="inpaintlab",
    version=VERSION,
    description="Stable Diffusion inpainting (SD 1.x, SD 2.x, SDXL) from scratch, with fused Triton kernels",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    license="MIT",
    python_requires=">=3.10",
    packages=find_packages(include=["inpaintlab", "inpaintlab.*"]),
    package_data={"inpaintlab.clip": ["bpe_simple_vocab_16e6.txt.gz", "LICENSE-CLIP.txt"]},
    install_requires=[
        "torch>=2.1",
        "safetensors",
        "numpy",
        "pillow",
        "einops",
        "ftfy",
        "regex",
        "tqdm",
        # A1111 blurs masks with cv2.GaussianBlur (8-bit fixed point); we call the same code to be bit-exact.
        "opencv-python-headless",
        # The SDE samplers use torchsde's Brownian tree (A1111 pins 0.2.6: the same numbers); LMS integrates its
        # coefficients and the Beta schedule takes its quantiles with scipy, as A1111 does.
        "torchsde==0.2.6",
        "scipy>=1.10",
    ],
    extras_require={
        "triton": ["triton"],
        "toml": ["tomli; python_version < '3.11'"],
        # LPIPS for sweeps. Install with the torch pinned (`pip install torch==X -e ".[metrics]"`): lpips pulls
        # torchvision, which otherwise brings its own torch build.
        "metrics": ["lpips==0.1.4"],
        # Oracles only: the models and samplers are checked against these, never imported by the library.
        # The segmentation, upscaler, detector and token-merging references are installed with --no-deps (README):
        # their torchvision requirement would pull a CUDA torch. These are the rest of what they import.
        "test": ["pytest", "ruff", "hypothesis", "diffusers==0.42.1", "transformers>=5.6", "peft==0.21.2",
                 "hydra-core", "iopath", "pyyaml", "matplotlib", "psutil", "polars", "ultralytics-thop"],
    },
    entry_points={"console_scripts": ["inpaintlab = inpaintlab.inpaint:main"]},
)
