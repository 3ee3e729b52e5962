"""(owner, frame id) pairs packed into one sortable int64 key, for vectorised look-ups by (sentence, frame).

``key = owner * 2^32 + frame_id``: keys sort by owner, then by frame. Frame ids must lie in ``[0, FRAME_ID_LIMIT)``
(check with :func:`frame_ids_in_range` before packing): a larger one would alias a frame of the next owner.
"""

from __future__ import annotations

import numpy as np

FRAME_ID_LIMIT = 1 << 32
_FRAME_STRIDE = np.int64(FRAME_ID_LIMIT)


def frame_ids_in_range(frame_ids: np.ndarray) -> np.ndarray:
    """Mask of the frame ids that can be packed into a key: ``0 <= frame_id < FRAME_ID_LIMIT``."""
    return (frame_ids >= 0) & (frame_ids < FRAME_ID_LIMIT)


def frame_keys(owner: np.ndarray, frame_ids: np.ndarray) -> np.ndarray:
    """int64 keys of the ``(owner, frame_id)`` pairs."""
    return owner * _FRAME_STRIDE + frame_ids


def split_frame_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(owner, frame_id)`` of each key: the inverse of :func:`frame_keys`."""
    return keys // _FRAME_STRIDE, keys % _FRAME_STRIDE
