"""What a trained Bridge-STG model has learned on the synthetic benchmark, part by part.

``python scripts/diagnose_synthetic.py MODEL_DIR [--samples 96] [overrides ...]``

MODEL_DIR is a run's ``model/`` folder (``save_pretrained`` output); trailing Hydra overrides select the data as for
training (default: the embedded synthetic test split). Prints, on the first ``--samples`` test clips:

* **spatial, given the span** (the decoder fed the training frame selection: GT tube frames): how often the token
  the bridging queries rank first lies on the target (its cell holds part of the GT box), the mean box IoU on those
  frames, and the share above 0.5;
* **the temporal head's position cue**: the target position the queries find in each chunk moves between chunks; its
  shift projected on the direction the query names ("... moves to the left") should be positive inside the GT
  window and near zero outside. Synthetic queries only: they name one of four directions;
* **the temporal head's query vector** (what its FiLM reads): the share of its variance that lies between the means
  of the four directions the queries name, and how well the direction reads out of it on held-out clips (fit on
  the even-numbered clips, tested on the odd ones) by the nearest direction mean and by ridge regression. A
  direction that a linear readout finds but the nearest mean does not is a small component among large ones;
* **the sentence's motion probe** (``query_motion_B2``, read from the text alone; models with motion matching): the
  share of clips whose probe points to the direction the query names (the nearest of the four unit directions);
* **which object the boxes land on** (the decoder fed the GT frames, as in the first item): on every decoded frame
  with a GT box, the object of the regenerated scene whose box centre is nearest the predicted box centre, as the
  target or by what it shares with it (same colour and shape, same colour, same shape, none); and the share of frames
  whose predicted centre lies within 3 px of the target's centre, with their mean box IoU (precision once found).
  Needs the scenes: eval source of kind ``synthetic``.

Numbers of the results page (docs/results.md) come from this script.
"""

from __future__ import annotations

import argparse
import inspect
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from bridge_stg.data.synthetic import Attributes, Scene, make_scene
from bridge_stg.engine.builder import build_spec
from bridge_stg.engine.components import build_collator, build_eval_dataset, load_model
from bridge_stg.loss.box_ops import cxcywh_to_xyxy
from bridge_stg.loss.criterion import box_area_share
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.ops.boxes import paired_box_iou

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
RIDGE = 1e-2  # ridge penalty per fitted sample, on standardised features
RELATIONS = ("target", "same colour and shape", "same colour", "same shape", "none")  # where a box lands
FOUND_RADIUS_PX = 3.0  # a predicted centre this close to the target's centre has found it


def query_direction(query: str) -> str:
    """The one direction word of ``DIRECTIONS`` a synthetic query names."""
    found = [word for word in DIRECTIONS if f" {word}" in f" {query}"]
    if len(found) != 1:
        raise ValueError(f"query {query!r} does not name exactly one of {list(DIRECTIONS)}: not a synthetic query")
    return found[0]


def direction_readout(vectors: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """How ``vectors [N, d]`` carry ``labels [N]`` (0..3): between-direction share of the variance, and held-out
    accuracies of the nearest direction mean and of a ridge regression of one-hot labels on standardised features
    (fit on even rows, test on odd rows)."""
    x = vectors.astype(np.float64)
    classes = np.unique(labels)
    means = np.stack([x[labels == k].mean(0) for k in classes])
    between = sum((labels == k).sum() * ((m - x.mean(0)) ** 2).sum() for k, m in zip(classes, means))
    share = between / ((x - x.mean(0)) ** 2).sum()
    fit, test = np.arange(0, len(x), 2), np.arange(1, len(x), 2)
    fit_means = np.stack([x[fit][labels[fit] == k].mean(0) for k in classes])
    nearest = classes[np.argmin(((x[test, None] - fit_means[None]) ** 2).sum(-1), axis=1)]
    centre, scale = x[fit].mean(0), x[fit].std(0) + 1e-12  # standardised: a small feature counts as a large one
    a = (x[fit] - centre) / scale
    one_hot = (labels[fit, None] == classes[None]).astype(np.float64)
    w = np.linalg.solve(a.T @ a + RIDGE * len(a) * np.eye(a.shape[1]), a.T @ (one_hot - one_hot.mean(0)))
    ridge = classes[np.argmax((x[test] - centre) / scale @ w, axis=1)]
    return {"query_direction_share": float(share), "query_nearest_mean_acc": float((nearest == labels[test]).mean()),
            "query_ridge_acc": float((ridge == labels[test]).mean())}


def motion_direction_index(motion_N2: np.ndarray) -> np.ndarray:
    """``[N]`` index into ``DIRECTIONS`` of the direction each (x right, y down) vector of ``[N, 2]`` points to most
    (argmax of its dot product with the four unit vectors; ties go to the earlier direction)."""
    units = np.array(list(DIRECTIONS.values()))
    return np.argmax(np.asarray(motion_N2, dtype=np.float64).reshape(-1, 2) @ units.T, axis=1)


def relation_to_target(attributes: Attributes, target: Attributes, is_target: bool) -> str:
    """One of ``RELATIONS``: what an object shares with the target (size counts only as "other size" when colour and
    shape agree)."""
    if is_target:
        return "target"
    colour, shape = attributes.colour == target.colour, attributes.shape == target.shape
    if colour and shape:
        return "same colour and shape"
    return "same colour" if colour else "same shape" if shape else "none"


def landed_object(centre_xy_px: np.ndarray, scene: Scene, frame_id: int) -> tuple[str, float]:
    """(relation to the target of the object whose box centre on ``frame_id`` is nearest ``centre_xy_px``, distance in
    pixels from ``centre_xy_px`` to the target's box centre)."""
    boxes = np.stack([obj.boxes_xyxy_px[frame_id] for obj in scene.objects]).astype(np.float64)
    dist = np.linalg.norm((boxes[:, :2] + boxes[:, 2:]) / 2 - np.asarray(centre_xy_px, dtype=np.float64), axis=1)
    nearest = int(np.argmin(dist))
    target = scene.objects[scene.target_id].attributes
    return relation_to_target(scene.objects[nearest].attributes, target, nearest == scene.target_id), \
        float(dist[scene.target_id])


def landing_summary(relations: list[str], target_dist_px: np.ndarray, ious: np.ndarray,
                    radius_px: float = FOUND_RADIUS_PX) -> dict[str, float]:
    """Shares of frames per relation (``lands_on_<relation>``), share of frames whose predicted centre is within
    ``radius_px`` of the target's (``found_within_3px``) and their mean IoU (``box_iou_when_found``, NaN if none)."""
    rel = np.array(relations, dtype=object)
    found = np.asarray(target_dist_px) <= radius_px
    out = {f"lands_on_{name.replace(' ', '_')}": float((rel == name).mean()) if len(rel) else math.nan
           for name in RELATIONS}
    out["found_within_3px"] = float(found.mean()) if len(found) else math.nan
    out["box_iou_when_found"] = float(np.asarray(ious)[found].mean()) if found.any() else math.nan
    return out


def diagnose(model: BridgeSTG, dataset, collator, num_samples: int, batch_size: int = 8,
             scene_for: Callable[[int], Scene] | None = None) -> dict[str, float]:
    """The diagnostics of the module docstring. ``scene_for(sentence_id)`` regenerates a clip's scene (synthetic eval
    source); without it the landing numbers are NaN."""
    captured: dict[str, torch.Tensor] = {}
    head_forward = model.temporal_head.forward
    head_signature = inspect.signature(head_forward)

    def capture(*args, **kwargs):
        bound = head_signature.bind(*args, **kwargs).arguments  # by name: robust to the argument order
        captured["position"] = bound["position_BC2"].detach()
        captured["query"] = bound["query_Bd"].detach()
        return head_forward(*args, **kwargs)

    model.temporal_head.forward = capture
    ious, hits, inside, outside, queries, directions = [], [], [], [], [], []
    motions: list[np.ndarray | None] = []
    relations, target_dist = [], []
    scenes: dict[int, Scene] = {}
    generator = torch.Generator().manual_seed(0)
    try:
        with torch.no_grad():
            for first in range(0, min(num_samples, len(dataset)), batch_size):
                samples = [dataset[i] for i in range(first, min(first + batch_size, num_samples, len(dataset)))]
                batch = collator(samples)
                model.train()  # GT frame selection: the spatial part judged on its own
                out = model(batch, generator=generator)
                idx = out.decoded_frames.clamp(min=0)
                gt = batch.boxes_cxcywh01.gather(1, idx[..., None].expand(-1, -1, 4))
                has = out.decoded_mask & batch.box_mask.gather(1, idx)
                ious.append(paired_box_iou(cxcywh_to_xyxy(out.boxes_cxcywh01[-1][has].float()).numpy(),
                                           cxcywh_to_xyxy(gt[has].float()).numpy()))
                share = box_area_share(gt, out.token_centers01, out.token_cell01)
                top = out.token_logits.masked_fill(~out.token_mask, float("-inf")).argmax(-1)
                hits.append((share.gather(-1, top[..., None])[..., 0] > 0)[has].numpy())
                if scene_for is not None:
                    boxes = out.boxes_cxcywh01[-1].float()
                    for b, f in torch.nonzero(has).tolist():  # the order of the IoUs above (row-major)
                        sample = samples[b]
                        if sample.sentence_id not in scenes:
                            scenes[sample.sentence_id] = scene_for(sample.sentence_id)
                        height, width = sample.orig_size
                        centre = boxes[b, f, :2].numpy() * [width, height]
                        frame_id = int(sample.frame_ids[int(idx[b, f])])
                        relation, dist = landed_object(centre, scenes[sample.sentence_id], frame_id)
                        relations.append(relation)
                        target_dist.append(dist)
                model.eval()
                eval_out = model(batch)
                motion = getattr(eval_out, "query_motion_B2", None)
                motions.append(None if motion is None else motion.float().numpy())
                position = captured["position"].numpy()
                queries.append(captured["query"].float().numpy())
                for b, sample in enumerate(samples):
                    direction = query_direction(sample.query)
                    directions.append(list(DIRECTIONS).index(direction))
                    along = (position[b, 1:] - position[b, :-1]) @ np.array(DIRECTIONS[direction])
                    start, end = sample.span
                    for c in range(len(sample.frame_ids) // 2 - 1):  # chunk c -> c + 1: frames 2c+1 -> 2c+2
                        (inside if start <= 2 * c + 2 < end or start <= 2 * c + 1 < end else outside).append(along[c])
    finally:
        model.temporal_head.forward = head_forward
    iou = np.concatenate(ious)
    asked = np.array(directions)
    probe = math.nan if any(m is None for m in motions) else \
        float((motion_direction_index(np.concatenate(motions)) == asked).mean())
    landing = landing_summary(relations, np.array(target_dist), iou) if scene_for is not None else \
        landing_summary([], np.zeros(0), np.zeros(0))
    return {"top_token_on_target": float(np.concatenate(hits).mean()), "box_iou": float(iou.mean()),
            "box_iou>0.5": float((iou > 0.5).mean()), "shift_inside": float(np.mean(inside)),
            "shift_outside": float(np.mean(outside)), "shift_std": float(np.std(inside + outside)),
            **direction_readout(np.concatenate(queries), asked), "motion_probe_on_asked_direction": probe,
            **landing}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model_dir", type=Path)
    p.add_argument("--samples", type=int, default=96)
    p.add_argument("overrides", nargs="*", help="Hydra overrides selecting the data (as for scripts/train.py)")
    args = p.parse_args(argv)
    with initialize_config_dir(config_dir=str(CONFIGS), version_base="1.3"):
        cfg = compose(config_name="train", overrides=args.overrides)
    spec = build_spec(cfg, os.devnull)
    model = load_model(args.model_dir)
    if not isinstance(model, BridgeSTG):
        print(f"{args.model_dir} is not a Bridge-STG model", file=sys.stderr)
        return 2
    source = spec.data.eval_source
    scene_for = None
    if source is not None and source.kind == "synthetic":
        def scene_for(index: int) -> Scene:  # test/val split: the sentence id is the clip index
            return make_scene(spec.data.synthetic, source.split, index)
    stats = diagnose(model, build_eval_dataset(spec), build_collator(model, spec), args.samples, scene_for=scene_for)
    print(f"spatial, given the GT frames: top-ranked token on the target {stats['top_token_on_target']:.1%}, "
          f"box IoU {stats['box_iou']:.3f} (> 0.5: {stats['box_iou>0.5']:.1%})")
    print(f"position cue, shift along the query's direction per chunk: inside the window {stats['shift_inside']:+.4f},"
          f" outside {stats['shift_outside']:+.4f} (std {stats['shift_std']:.4f}; frame widths)")
    print(f"temporal head's query vector: {stats['query_direction_share']:.1%} of its variance between the asked "
          f"directions; direction read out on held-out clips by the nearest mean {stats['query_nearest_mean_acc']:.1%},"
          f" by ridge regression {stats['query_ridge_acc']:.1%} (chance 25%)")
    probe = stats["motion_probe_on_asked_direction"]
    print("sentence's motion probe: " + ("n/a: no motion matching" if math.isnan(probe) else
                                         f"names the asked direction on {probe:.1%} of clips (chance 25%)"))
    if math.isnan(stats["lands_on_target"]):
        print("where the boxes land, given the GT frames: n/a: the eval source is not a synthetic split")
    else:
        shares = ", ".join(f"{name} {stats['lands_on_' + name.replace(' ', '_')]:.1%}" for name in RELATIONS)
        found_iou = stats["box_iou_when_found"]
        print(f"where the boxes land, given the GT frames (object with the nearest centre): {shares}; "
              f"centre within {FOUND_RADIUS_PX:.0f} px of the target's on {stats['found_within_3px']:.1%} of frames, "
              f"box IoU there " + ("n/a" if math.isnan(found_iou) else f"{found_iou:.3f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
