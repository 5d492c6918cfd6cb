"""Label sets: the ordered class names a model predicts, loaded from ``configs/labels/*.yaml``.

A label file::

    name: vgmshield9
    task: trace                  # detect | trace | multilabel
    negative: normal             # optional: a data label meaning "none of the classes" (multilabel)
    classes:
      - {name: hotshot-xl, display: Hotshot-XL}     # order = class index
      - lavie                                        # a bare name is its own display name

Folder datasets use ``name`` as the sub-folder (``root/<name>/*.mp4``).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Iterable, Iterator, List, Mapping, Optional, Sequence, Union

from mmvgm.config import check_keys, did_you_mean, load_yaml, resolve_config
from mmvgm.errors import ConfigError, InputError, PathLike

TASKS = ("detect", "trace", "multilabel")
_KEYS = ("name", "task", "classes", "negative", "description")
_CLASS_KEYS = ("name", "display", "description")


class LabelSet:
    """Ordered class names; index ``i`` is the model's output ``i``."""

    def __init__(self, name: str, names: Sequence[str], display: Optional[Sequence[str]] = None,
                 task: str = "trace", negative: Optional[str] = None,
                 source: Optional[PathLike] = None) -> None:
        names = [str(n) for n in names]
        where = source
        if not names:
            raise ConfigError(f"label set '{name}' has no classes", where)
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ConfigError(f"label set '{name}' lists {', '.join(dupes)} more than once", where)
        if task not in TASKS:
            raise ConfigError(f"label set '{name}': task must be one of {', '.join(TASKS)}, got '{task}'", where)
        if negative is not None and negative in names:
            raise ConfigError(f"label set '{name}': negative label '{negative}' is also a class", where)
        display = list(display) if display is not None else list(names)
        if len(display) != len(names):
            raise ConfigError(f"label set '{name}': {len(display)} display names for {len(names)} classes", where)
        self.name = str(name)
        self.task = task
        self.names: List[str] = names
        self.display: List[str] = [str(d) for d in display]
        self.negative = negative
        self.source = None if source is None else str(source)
        self._index = {n: i for i, n in enumerate(names)}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def load(cls, name_or_path: Union[PathLike, "LabelSet"]) -> "LabelSet":
        """A shipped name (``vgmshield9``, ``detect``, ``uvd5``) or a path to a label YAML."""
        if isinstance(name_or_path, LabelSet):
            return name_or_path
        path = resolve_config(name_or_path, "labels")
        return cls.from_dict(load_yaml(path), source=path, default_name=Path(path).stem)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: Optional[PathLike] = None,
                  default_name: str = "labels") -> "LabelSet":
        """From the YAML mapping (also what :meth:`to_dict` stores in checkpoints)."""
        check_keys(data, _KEYS, where="label file", path=source)
        classes = data.get("classes")
        if not isinstance(classes, list):
            raise ConfigError("label file needs a 'classes' list", source)
        names, display = [], []
        for i, entry in enumerate(classes):
            if isinstance(entry, str):
                names.append(entry)
                display.append(entry)
                continue
            if not isinstance(entry, Mapping) or "name" not in entry:
                raise ConfigError(f"classes[{i}] must be a name or a mapping with 'name'", source)
            check_keys(entry, _CLASS_KEYS, where=f"classes[{i}]", path=source)
            names.append(str(entry["name"]))
            display.append(str(entry.get("display", entry["name"])))
        return cls(data.get("name", default_name), names, display, task=data.get("task", "trace"),
                   negative=data.get("negative"), source=source)

    @classmethod
    def from_names(cls, names: Iterable[str], name: str = "inferred", task: Optional[str] = None) -> "LabelSet":
        """Labels found in data (e.g. folder names), sorted; ``real``/``fake`` alone means detect."""
        names = sorted(set(names))
        if task is None:
            task = "detect" if set(names) == {"real", "fake"} else "trace"
        if task == "detect" and set(names) == {"real", "fake"}:
            names = ["real", "fake"]  # real = 0, fake = 1, whatever the sort says
        return cls(name, names, task=task)

    def to_dict(self) -> dict:
        out: dict = {"name": self.name, "task": self.task,
                     "classes": [{"name": n, "display": d} for n, d in zip(self.names, self.display)]}
        if self.negative is not None:
            out["negative"] = self.negative
        return out

    # -- lookups --------------------------------------------------------------------------
    def index(self, name: str, where: Optional[PathLike] = None) -> int:
        """Class index of ``name``; an unknown name is an ``InputError`` listing the known ones."""
        try:
            return self._index[name]
        except KeyError:
            raise InputError(self.unknown_message(name), where) from None

    def unknown_message(self, name: str) -> str:
        return (f"unknown label '{name}'{did_you_mean(str(name), self.names)}; "
                f"label set '{self.name}' knows: {', '.join(self.names)}" + (f" (and '{self.negative}' for none)" if self.negative else ""))

    def display_name(self, name_or_index: Union[str, int]) -> str:
        i = name_or_index if isinstance(name_or_index, int) else self.index(name_or_index)
        return self.display[i]

    @property
    def label_to_index(self) -> dict:
        return dict(self._index)

    def is_known(self, name: str) -> bool:
        """A class name, or the negative label of a multilabel set."""
        return name in self._index or (self.negative is not None and name == self.negative)

    def __len__(self) -> int:
        return len(self.names)

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelSet) and self.to_dict() == other.to_dict()

    def __repr__(self) -> str:
        return f"LabelSet({self.name!r}, task={self.task!r}, classes={self.names!r})"


def require_all_classes(samples: Iterable[Any], labels: Union[LabelSet, Sequence[str]],
                        where: str = "the dataset") -> dict:
    """Refuse data in which some class has no sample (a model cannot learn an empty class).

    ``samples``: objects with a ``.label`` (``Sample``) or label strings. Returns the counts
    per class. Labels outside the set are refused too, listing the known ones.
    """
    label_set = labels if isinstance(labels, LabelSet) else LabelSet("labels", list(labels))
    counts = {name: 0 for name in label_set.names}
    for sample in samples:
        label = getattr(sample, "label", sample)
        if label in counts:
            counts[label] += 1
        elif not label_set.is_known(label):
            raise InputError(label_set.unknown_message(label), getattr(sample, "path", None))
    empty = [name for name, n in counts.items() if n == 0]
    if empty:
        present = ", ".join(f"{n}={c}" for n, c in counts.items() if c)
        raise InputError(f"no samples for class{'es' if len(empty) > 1 else ''} {', '.join(empty)} in {where}; "
                         f"every class of label set '{label_set.name}' needs at least one "
                         f"(found: {present or 'nothing'})")
    return counts
