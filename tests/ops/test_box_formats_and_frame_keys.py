"""Box format conversions and (owner, frame id) keys against hand-computed cases."""

import numpy as np

from bridge_stg.ops.boxes import cxcywh_to_xyxy, xyxy_to_cxcywh
from bridge_stg.ops.frame_keys import FRAME_ID_LIMIT, frame_ids_in_range, frame_keys, split_frame_keys


def test_centre_and_corner_boxes_convert_both_ways():
    cxcywh = np.array([[0.5, 0.5, 0.4, 0.2], [30.0, 20.0, 10.0, 0.0]])
    xyxy = np.array([[0.3, 0.4, 0.7, 0.6], [25.0, 20.0, 35.0, 20.0]])
    np.testing.assert_allclose(cxcywh_to_xyxy(cxcywh), xyxy, rtol=0, atol=1e-15)
    np.testing.assert_allclose(xyxy_to_cxcywh(xyxy), cxcywh, rtol=0, atol=1e-15)
    assert cxcywh_to_xyxy([0.5, 0.5, 0.4, 0.2]).shape == (4,) and xyxy_to_cxcywh(np.zeros((2, 3, 4))).shape == (2, 3, 4)


def test_frame_keys_sort_by_owner_then_frame_and_split_back():
    owner, frame = np.array([0, 0, 1, 2]), np.array([7, FRAME_ID_LIMIT - 1, 0, 3])
    keys = frame_keys(owner, frame)
    assert keys.dtype == np.int64 and (np.diff(keys) > 0).all()
    back_owner, back_frame = split_frame_keys(keys)
    assert back_owner.tolist() == owner.tolist() and back_frame.tolist() == frame.tolist()
    edges = np.array([-1, 0, FRAME_ID_LIMIT - 1, FRAME_ID_LIMIT])
    assert frame_ids_in_range(edges).tolist() == [False, True, True, False]
