"""sha256 digests as the dataset manifest records them: the data pipeline writes them, training checks them.

A split's digest is taken over its Arrow data files in name order, so ``cat dataset/train/data-*.arrow | sha256sum``
reproduces it.
"""

import hashlib
from pathlib import Path


def sha256_files(paths: list[Path]) -> str:
    """One digest over the files' bytes, in the order given (same as ``cat FILES | sha256sum``)."""
    digest = hashlib.sha256()
    for path in paths:
        with open(path, "rb") as handle:
            while block := handle.read(1 << 20):
                digest.update(block)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    return sha256_files([path])


def sha256_split(split_dir: Path) -> str:
    """The digest of a split saved with ``save_to_disk`` (``<view>/<split>/``)."""
    return sha256_files(sorted(split_dir.glob("data-*.arrow")))
