"""What each task trains on: its label set and how data labels map onto it.

- ``detect``: labels ``real`` (0) and ``fake`` (1). Data folders are ``real`` plus anything
  else (``fake`` or source names such as ``lavie``): every non-``real`` label becomes ``fake``.
- ``trace``: exactly the classes of the label file (default ``vgmshield9``). ``real`` videos
  are not a source and are left out; other labels outside the file are left out with a
  warning (that is how a held-out source for ``eval --holdout-class`` is kept apart).
- ``joint``: ``real`` plus the label file's classes (``real`` at index 0); ``fake`` alone is
  not enough to train the tracing head, so it is refused.

The one home of this mapping: ``mmvgm train`` (through ``mmvgm.engine.tasks``) and
``mmvgm dataset`` (``mmvgm.data.report``) both use it, so the report describes the data as
training uses it.
"""
from __future__ import annotations

import dataclasses
import difflib
from collections import Counter
from typing import Dict, List, Optional, Sequence, Tuple

from mmvgm.data.labels import LabelSet
from mmvgm.errors import ConfigError, InputError, PathLike

TASKS = ("detect", "trace", "joint")
REAL = "real"
FAKE = "fake"
DEFAULT_TRACE_LABELS = "vgmshield9"


def check_task(task: str) -> str:
    if task not in TASKS:
        hint = difflib.get_close_matches(str(task), TASKS, n=1)
        raise ConfigError(f"unknown task '{task}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
                          + f"; use one of {', '.join(TASKS)}")
    return task


def task_label_set(task: str, labels: Optional[PathLike] = None) -> LabelSet:
    """The ordered label set the model predicts for ``task`` (see the module docstring)."""
    check_task(task)
    if task == "detect":
        return LabelSet.load("detect")
    source = LabelSet.load(labels or DEFAULT_TRACE_LABELS)
    if REAL in source.names:
        if task == "trace":
            raise ConfigError(f"label set '{source.name}' contains '{REAL}'; tracing labels are "
                              "generator sources (use --task joint or detect for real videos)",
                              source.source)
        raise ConfigError(f"label set '{source.name}' already contains '{REAL}'; for joint give only "
                          "the sources", source.source)
    if task == "trace":
        return source
    return LabelSet(f"{source.name}+real", [REAL, *source.names], ["Real video", *source.display],
                    task="trace", source=source.source)


def map_label(task: str, label: Optional[str], names: Sequence[str]) -> Optional[str]:
    """A data label in the task's label space, or None when the sample is not used."""
    if label is None:
        return None
    if task == "detect":
        return REAL if label == REAL else FAKE
    return label if label in names else None


def relabel(samples: Sequence, task: str, label_set: LabelSet) -> List:
    """The samples with their labels in the task's label space (unused ones dropped)."""
    out = []
    for s in samples:
        mapped = map_label(task, s.label, label_set.names)
        if mapped is not None:
            out.append(s if mapped == s.label else dataclasses.replace(s, label=mapped))
    return out


def split_used(samples: Sequence, task: str, label_set: LabelSet) -> Tuple[List, Dict[str, int]]:
    """(the samples the task uses, with their *data* labels; {unused label: count}).

    Raises ``InputError`` when a trace/joint dataset names generated videos only by the
    generic label ``fake``, which names no source.
    """
    used, unused = [], Counter()
    for s in samples:
        if map_label(task, s.label, label_set.names) is None:
            unused[s.label] += 1
        else:
            used.append(s)
    if task != "detect" and set(unused) - {REAL} == {FAKE}:
        raise InputError(f"the data labels generated videos only as '{FAKE}'; task '{task}' needs "
                         f"source folders named after the classes of '{label_set.name}' "
                         f"({', '.join([n for n in label_set.names if n != REAL][:4])}, ...)")
    return used, dict(sorted(unused.items(), key=lambda kv: str(kv[0])))


def unused_message(unused: Dict[str, int], label_set: LabelSet, task: str) -> Optional[str]:
    """One line for the user about data that the task leaves out (None when nothing is)."""
    if not unused:
        return None
    parts = []
    for label, n in unused.items():
        close = difflib.get_close_matches(str(label), label_set.names, n=1)
        hint = f", did you mean '{close[0]}'?" if close and label != REAL else ""
        parts.append(f"{label} ({n}{hint})")
    why = "real videos are not a source" if set(unused) == {REAL} else \
        f"not in label set '{label_set.name}'"
    return f"task '{task}' leaves out {sum(unused.values())} video(s): {', '.join(parts)} [{why}]"
