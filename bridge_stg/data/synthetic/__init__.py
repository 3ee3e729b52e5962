"""The synthetic STVG benchmark: videos of moving 2-D shapes, one referring query each, written as real mp4 files
and real-format annotations. It is the embedded default dataset the project trains and tests on.

**A video.** ``frame_count = round(seconds * fps)`` frames of ``height_px x width_px`` on a grey, lightly textured
background, holding ``objects`` shapes (a colour, a shape, a size each). Every object follows a motion script of
consecutive phases, each ``still`` or constant-velocity motion ``left``/``right``/``up``/``down``; speeds are chosen
so that no object ever reaches past the frame (no clamping, no bouncing), and at least 1 px per frame so that every
frame of a moving phase shows motion. A phase ``[start, end)`` moves its object from frame ``f - 1`` to frame ``f``
for every ``f`` in it (frame 0 has no predecessor), so frame ``f >= 1`` lies in a ``left`` phase iff the box moved
left between frames ``f - 1`` and ``f``.

**A query** names the target by its attributes and one direction ("the small red square while it moves to the
left", three templates). The target has exactly one phase in that direction: it is the ground-truth tube (the
window), lasting ``window_fraction`` of the clip (10-30 % by default: short, so that whole-clip guesses score low);
its other phases are ``still`` or other directions. Distractors make both halves of the query necessary: each
shares attributes with the target (same shape other colour, same colour other shape, same colour and shape other
size), one moves in the query's direction at a time disjoint from the window and another during it. The size word
is said only when another object has the target's colour and shape (as a referring expression would), so no other
object matches every attribute the query names (checked). The target keeps ``min_target_visible_01`` of its pixels
visible on every frame (drawing order is random; scenes failing a check are redrawn).

**Ground truth.** The target's tight pixel box on every frame (``xyxy``, continuous pixel edges: a shape covering
pixel columns ``x0..x1-1`` spans ``[x0, x1)``), drawn with pixel-exact masks; the tube is the window.

**Determinism.** Video ``i`` of split ``s`` is drawn from its own stream ``SeedSequence([seed, crc32(s), i])``:
splits are independent, a split of n videos is the prefix of a longer one, and regeneration gives identical records,
frames and annotation files. Colours are converted to YUV here and x264 runs on one thread, which makes the mp4
bytes identical across runs of one PyAV/x264 build (another build may encode differently, decoding to nearly equal
frames).

**Files** written by :func:`generate_benchmark` under ``out_dir``::

    benchmark.json                                   config, split sizes, file layout (skip-regeneration key)
    videos/<split>/syn_<split>_<i:05d>.mp4           H.264, yuv420p, GOP ``gop`` frames, no B-frames
    annotations/vidstg/<split>_annotations.json      VidSTG official sentence file (dataset "vidstg")
    annotations/vidor/<split>/<video_id>.json        VidOR box files: the target's box on every frame
    annotations/hcstvg/<split>.json                  HC-STVG v1, only for 20 s clips

The VidSTG copies of the records say ``sentence_type="declarative"`` (the format needs a type; the queries are
declarative phrases). HC-STVG assumes 20 s clips and stores no frame rate (readers take ``fps = img_num / 20``), so
it is written only when ``frame_count / fps == 20`` (the default); its copies are 1-based (``annotation_frame_base=1``,
inclusive tube end), have no ``target_id`` and carry boxes on the tube frames only. :func:`load_split` reads a split
back.

**Modules.** :mod:`.config` (the vocabulary and :class:`SyntheticConfig`), :mod:`.scene` (the scene records),
:mod:`.sampling` (drawing a scene), :mod:`.motion` (motion scripts and boxes), :mod:`.render` (masks and pixels),
:mod:`.write` (records, videos, annotation files, the manifest) and :mod:`.cli` (``bridge-stg-data synth``). This
package re-exports the names used outside it.
"""

from bridge_stg.data.synthetic.cli import add_synth_arguments, run_synth
from bridge_stg.data.synthetic.config import COLOURS_RGB, DIRECTIONS, SHAPES, STILL, SyntheticConfig
from bridge_stg.data.synthetic.render import label_map, render_scene
from bridge_stg.data.synthetic.sampling import make_scene, matches_query
from bridge_stg.data.synthetic.scene import Attributes, Scene
from bridge_stg.data.synthetic.write import (
    annotation_paths,
    generate_benchmark,
    generate_split,
    load_split,
    scene_record,
    to_hcstvg_record,
    to_vidstg_record,
)

__all__ = [
    "Attributes",
    "COLOURS_RGB",
    "DIRECTIONS",
    "SHAPES",
    "STILL",
    "Scene",
    "SyntheticConfig",
    "add_synth_arguments",
    "annotation_paths",
    "generate_benchmark",
    "generate_split",
    "label_map",
    "load_split",
    "make_scene",
    "matches_query",
    "render_scene",
    "run_synth",
    "scene_record",
    "to_hcstvg_record",
    "to_vidstg_record",
]
