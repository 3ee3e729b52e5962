"""Dataset annotation formats -> :class:`~bridge_stg.structures.SentenceRecord` (torch-free).

Read any supported file with :func:`load_annotations` (the format is detected from the content); write the
formats with the ``write_*`` functions (a written file reads back into equal records). Malformed input raises
:class:`AnnotationError` naming the file, the sentence, the field and the fix.
"""

from bridge_stg.annotations.errors import AnnotationError
from bridge_stg.annotations.hcstvg import write_hcstvg, write_hcstvg_queries
from bridge_stg.annotations.load import DATASETS, detect_format, load_annotations
from bridge_stg.annotations.report import DroppedEntry, FlaggedEntry, LoadReport
from bridge_stg.annotations.vidstg import group_vidstg_items, write_tubedetr_vidstg, write_vidstg_official

__all__ = [
    "DATASETS",
    "AnnotationError",
    "DroppedEntry",
    "FlaggedEntry",
    "LoadReport",
    "detect_format",
    "group_vidstg_items",
    "load_annotations",
    "write_hcstvg",
    "write_hcstvg_queries",
    "write_tubedetr_vidstg",
    "write_vidstg_official",
]
