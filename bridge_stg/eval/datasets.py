"""The dataset registry: one record per dataset, read by every tool that names a dataset.

A record says how to read the dataset's annotation files, what its records ground, how tables title it and which
metric columns they show, the published numbers to set beside ours, and which data config trains and evaluates on
it. The training sources (``data.*.kind``), ``bridge-stg-eval --dataset``, ``bridge-stg-data check --dataset``,
``bridge-stg-tables`` and the metrics files' ``dataset`` all take a record's ``name``.

Adding a dataset is a reader (``annotations/``, the :data:`~bridge_stg.annotations.load.Reader` signature), a record
here (or :func:`register_dataset` at run time) and a ``configs/data/<name>.yaml``: see ``docs/extending.md``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import get_args

from bridge_stg.annotations.charades import read_charades_sta
from bridge_stg.annotations.load import Reader, read_stvg, read_synthetic
from bridge_stg.annotations.referring import read_referring_jsonl
from bridge_stg.eval.published import (
    AVERAGE_VIOU,
    HCSTVG_V1_ROWS,
    HCSTVG_V2_ROWS,
    METRICS,
    SENTENCE_TYPES,
    VIDSTG_ROWS,
    ResultRow,
)
from bridge_stg.structures import Task

# What a dataset's records ground (structures.Task): ``tube`` a span and a box on every frame of it (scored with
# m_tIoU / m_vIoU), ``temporal`` a span only, ``image`` one box on a one-frame "video". Scoring and tables serve
# ``tube`` datasets; the video check serves ``tube`` and ``temporal`` ones.
TASKS: tuple[Task, ...] = get_args(Task)
EXTENDING = "docs/extending.md"


@dataclass(frozen=True)
class DatasetInfo:
    """One dataset.

    ``name``: the key everywhere (source kinds, ``--dataset``, metrics files). ``task``: what its records ground
    (:data:`Task`). ``title``: the table heading. ``read``: its reader. ``config``: the ``configs/data`` option that
    trains and evaluates on it (``data=<config>``), or None when it only serves as a source of a mixture.
    ``published``: published result rows (×100), shown beside ours. ``sentence_types``: types whose metrics are
    reported separately (VidSTG's declarative / interrogative), which also adds the average m_vIoU column.
    ``check_fps``: whether the annotation states each video's frame rate, so the video check compares them.
    """

    name: str
    task: Task
    title: str
    read: Reader
    config: str | None = None
    published: tuple[ResultRow, ...] = ()
    sentence_types: tuple[str, ...] = ()
    check_fps: bool = False

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"dataset name {self.name!r} must be an identifier (letters, digits, underscores)")
        if self.task not in TASKS:
            raise ValueError(f"dataset {self.name}: task must be one of {list(TASKS)}, got {self.task!r}")
        foreign = sorted({r.dataset for r in self.published} - {self.name})
        if foreign:
            raise ValueError(f"dataset {self.name}: its published rows name other datasets {foreign}")

    @property
    def metric_keys(self) -> tuple[str, ...]:
        """The metrics-file keys its tables show, in column order."""
        if self.sentence_types:
            return tuple(f"{t}_{m}" for t in self.sentence_types for m in METRICS) + (AVERAGE_VIOU,)
        return METRICS


_REGISTRY: dict[str, DatasetInfo] = {}


def register_dataset(info: DatasetInfo) -> DatasetInfo:
    """Add ``info`` to the registry (a name may be registered once; :func:`unregister_dataset` frees it)."""
    if info.name in _REGISTRY:
        raise ValueError(f"dataset {info.name!r} is already registered")
    _REGISTRY[info.name] = info
    return info


def unregister_dataset(name: str) -> None:
    get_dataset(name)
    del _REGISTRY[name]


def get_dataset(name: str) -> DatasetInfo:
    """The record of ``name``; an unknown name is a ``ValueError`` listing the registered ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; registered: {list(_REGISTRY)} (adding one: {EXTENDING})") \
            from None


def dataset_names(*tasks: Task) -> tuple[str, ...]:
    """Registered names in registration order; with ``tasks``, those whose records ground one of them."""
    return tuple(name for name, info in _REGISTRY.items() if not tasks or info.task in tasks)


def metric_keys(dataset: str) -> tuple[str, ...]:
    """The metrics-file keys a table for ``dataset`` shows, in column order."""
    return get_dataset(dataset).metric_keys


def published_rows(dataset: str, split: str | None = None) -> list[ResultRow]:
    """Published rows for ``dataset`` (and ``split`` when given), in the order of the doc."""
    return [r for r in get_dataset(dataset).published if split is None or r.split == split]


def dataset_title(dataset: str) -> str:
    """Display name: ``vidstg`` → ``VidSTG``, ``hcstvg_v1`` → ``HC-STVG v1``, ``synthetic`` → ``Synthetic
    benchmark``."""
    return get_dataset(dataset).title


for _info in (
    DatasetInfo("vidstg", "tube", "VidSTG", read_stvg, config="vidstg", published=VIDSTG_ROWS,
                sentence_types=SENTENCE_TYPES, check_fps=True),
    DatasetInfo("hcstvg_v1", "tube", "HC-STVG v1", read_stvg, config="hcstvg_v1", published=HCSTVG_V1_ROWS),
    DatasetInfo("hcstvg_v2", "tube", "HC-STVG v2", read_stvg, config="hcstvg_v2", published=HCSTVG_V2_ROWS),
    DatasetInfo("synthetic", "tube", "Synthetic benchmark", read_synthetic, config="synthetic", check_fps=True),
    DatasetInfo("charades", "temporal", "Charades-STA", read_charades_sta),
    DatasetInfo("refcoco", "image", "RefCOCO", read_referring_jsonl),
):
    register_dataset(_info)
