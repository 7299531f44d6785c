"""Write scikit-learn's digits as an ImageFolder directory of real PNG and JPEG files.

Used to time `python sweeps/classify.py --data DIR` on files read from disk, against the same images
the default sweep holds in memory:

    python benchmarks/export_digits.py /tmp/digits_folder
    python sweeps/classify.py --data /tmp/digits_folder
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image
from sklearn.datasets import load_digits


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("out", type=Path, help="directory to create: out/<digit>/<index>.png|.jpg")
    p.add_argument("--size", type=int, default=32, help="side of the written images, pixels (default %(default)s)")
    a = p.parse_args()
    digits = load_digits()
    for i, (img, label) in enumerate(zip(digits.images, digits.target, strict=True)):
        grey = Image.fromarray(np.rint(img * 255 / 16).astype(np.uint8)).resize((a.size, a.size), Image.BICUBIC)
        d = a.out / str(label)
        d.mkdir(parents=True, exist_ok=True)
        if i % 2:  # half JPEG (lossy, RGB), half PNG (lossless, greyscale): both must load the same way
            grey.convert("RGB").save(d / f"{i:04d}.jpg", quality=90)
        else:
            grey.save(d / f"{i:04d}.png")
    print(f"wrote {len(digits.target)} images in {len(digits.target_names)} class folders under {a.out}")


if __name__ == "__main__":
    main()
