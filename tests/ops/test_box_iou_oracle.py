"""The project's box IoU against an independent implementation: pycocotools' (the COCO evaluator's), on random
boxes including disjoint, nested, touching and zero-area ones."""

import numpy as np
from pycocotools import mask as coco_mask

from bridge_stg.ops.boxes import paired_box_iou, xywh_to_xyxy


def test_paired_box_iou_equals_pycocotools():
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 100, size=(2000, 2, 2))
    wh = rng.uniform(0, 60, size=(2000, 2, 2))
    wh[:100, 0] = 0.0  # zero-area predictions
    wh[100:200, 1] = wh[100:200, 0]  # same size ...
    xy[100:200, 1] = xy[100:200, 0] + wh[100:200, 0] * [1.0, 0.0]  # ... touching on an edge
    xy[200:400, 1] = xy[200:400, 0] + rng.uniform(-3, 3, size=(200, 2))  # near-duplicates and nested boxes
    wh[200:400, 1] = wh[200:400, 0] * rng.uniform(0.5, 1.2, size=(200, 2))
    a_xywh, b_xywh = np.concatenate([xy[:, 0], wh[:, 0]], 1), np.concatenate([xy[:, 1], wh[:, 1]], 1)

    ours = paired_box_iou(xywh_to_xyxy(a_xywh), xywh_to_xyxy(b_xywh))
    theirs = np.array([coco_mask.iou(a[None], b[None], [0])[0, 0] for a, b in zip(a_xywh, b_xywh)])

    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-12)
    assert (ours[:100] == 0).all() and (ours[100:200] == 0).all() and (ours > 0.5).sum() > 100
