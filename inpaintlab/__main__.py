"""`python -m inpaintlab ...` (also under `torchrun ... -m inpaintlab`): the `inpaintlab` command."""
from .cli import main

if __name__ == "__main__":
    raise SystemExit(main())
