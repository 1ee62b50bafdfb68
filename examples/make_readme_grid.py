"""Draw the README's sweep grid with a tiny random-weight checkpoint (runs on any CPU in about a minute).

    python examples/make_readme_grid.py --out docs/sweep-tiny-random.png
"""
import argparse
import shutil
import tempfile
from pathlib import Path

from inpaintlab.demo import centre_mask, synthetic_picture
from inpaintlab.study import sweep
from inpaintlab.tiny import make_tiny_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/sweep-tiny-random.png")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        make_tiny_checkpoint(tmp / "tiny-random.safetensors")
        synthetic_picture(128).save(tmp / "picture.png")
        centre_mask(128).save(tmp / "mask.png")
        spec = {
            "model": "tiny-random.safetensors", "image": "picture.png", "mask": "mask.png", "kernels": "torch",
            "base": {"prompt": "a red square and a green circle", "steps": 8, "mask_blur": 4},
            "x": {"masked_content": ["fill", "original", "latent_noise", "latent_nothing"]},
            "y": {"denoising_strength": [0.5, 0.75, 1.0]},
            "seeds": [2976823394],
        }
        from inpaintlab.study.spec import load_spec

        sweep(load_spec(spec, root=tmp), tmp / "sweep")
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tmp / "sweep" / "grid-seed2976823394.png", args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
