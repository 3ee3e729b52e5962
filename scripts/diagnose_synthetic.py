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
  direction that a linear readout finds but the nearest mean does not is a small component among large ones.

Numbers of the results page (docs/results.md) come from this script.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import numpy as np
import torch
from hydra import compose, initialize_config_dir

from bridge_stg.engine.builder import build_spec
from bridge_stg.engine.components import build_collator, build_eval_dataset, load_model
from bridge_stg.loss.box_ops import cxcywh_to_xyxy
from bridge_stg.loss.criterion import box_area_share
from bridge_stg.model.bridge_stg import BridgeSTG
from bridge_stg.ops.boxes import paired_box_iou

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
DIRECTIONS = {"left": (-1.0, 0.0), "right": (1.0, 0.0), "up": (0.0, -1.0), "down": (0.0, 1.0)}
RIDGE = 1e-2  # ridge penalty per fitted sample, on standardised features


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


def diagnose(model: BridgeSTG, dataset, collator, num_samples: int, batch_size: int = 8) -> dict[str, float]:
    captured: dict[str, torch.Tensor] = {}
    head_forward = model.temporal_head.forward

    def capture(*args, **kwargs):
        captured["position"] = args[3].detach()
        captured["query"] = args[4].detach()
        return head_forward(*args, **kwargs)

    model.temporal_head.forward = capture
    ious, hits, inside, outside, queries, directions = [], [], [], [], [], []
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
                model.eval()
                model(batch)
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
    return {"top_token_on_target": float(np.concatenate(hits).mean()), "box_iou": float(iou.mean()),
            "box_iou>0.5": float((iou > 0.5).mean()), "shift_inside": float(np.mean(inside)),
            "shift_outside": float(np.mean(outside)), "shift_std": float(np.std(inside + outside)),
            **direction_readout(np.concatenate(queries), np.array(directions))}


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
    stats = diagnose(model, build_eval_dataset(spec), build_collator(model, spec), args.samples)
    print(f"spatial, given the GT frames: top-ranked token on the target {stats['top_token_on_target']:.1%}, "
          f"box IoU {stats['box_iou']:.3f} (> 0.5: {stats['box_iou>0.5']:.1%})")
    print(f"position cue, shift along the query's direction per chunk: inside the window {stats['shift_inside']:+.4f},"
          f" outside {stats['shift_outside']:+.4f} (std {stats['shift_std']:.4f}; frame widths)")
    print(f"temporal head's query vector: {stats['query_direction_share']:.1%} of its variance between the asked "
          f"directions; direction read out on held-out clips by the nearest mean {stats['query_nearest_mean_acc']:.1%},"
          f" by ridge regression {stats['query_ridge_acc']:.1%} (chance 25%)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
