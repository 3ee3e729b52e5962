"""Pictures of predictions and the static evaluation report.

``figures.py`` draws (boxes on frames, contact sheets, span timelines); ``report.py`` scores a prediction file with
:mod:`bridge_stg.eval` and writes a self-contained HTML report (``bridge-stg-report``). The package sits beside the
evaluation layer: it reads annotations, prediction files and (optionally) video frames, and imports nothing of the
model, the losses, the engine or the command lines (``tests/test_layering.py``).
"""
