"""YAML configs: find them (in the repo or the installed package), load, override, validate."""
from __future__ import annotations

import copy
import difflib
import os
from pathlib import Path
from typing import Any, Iterable, Mapping, Optional

import yaml

from mmvgm.errors import ConfigError, InputError, PathLike


def configs_dir() -> Path:
    """The shipped ``configs/`` folder: inside the wheel, or at the repository root in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "configs", here.parent / "configs"):
        if candidate.is_dir():
            return candidate
    raise ConfigError("the shipped configs/ folder is missing; reinstall mmvgm")


def resolve_config(name_or_path: PathLike, group: str) -> Path:
    """A path to a YAML file, or a bare name looked up in ``configs/<group>/<name>.yaml``."""
    path = Path(name_or_path).expanduser()
    # is_file, not exists: a folder named like a shipped config (say, weights in ./videomae/)
    # must not shadow the config name.
    if path.suffix in (".yaml", ".yml") or path.is_file():
        if not path.is_file():
            raise InputError("config file not found", path)
        return path
    shipped = configs_dir() / group / f"{path.name}.yaml"
    if shipped.is_file():
        return shipped
    known = sorted(p.stem for p in (configs_dir() / group).glob("*.yaml"))
    hint = did_you_mean(str(name_or_path), known)
    raise ConfigError(f"no {group} config named '{name_or_path}'{hint}; known: {', '.join(known)}")


def load_yaml(path: PathLike) -> dict:
    path = Path(path)
    try:
        with open(path, "r", encoding="utf-8") as fh:
            data = yaml.safe_load(fh)
    except FileNotFoundError:
        raise InputError("file not found", path) from None
    except UnicodeDecodeError:
        raise ConfigError("not a YAML file (not UTF-8 text)", path) from None
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}", path) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"invalid YAML: {exc}".splitlines()[0], path) from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", path)
    return data


def yaml_safe(obj: Any) -> Any:
    """A copy ``yaml.safe_dump`` can write: mappings -> dicts with str keys, tuples -> lists,
    numpy/torch values -> Python (``tolist``), paths -> str."""
    if isinstance(obj, Mapping):
        return {str(k): yaml_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [yaml_safe(v) for v in obj]
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    return obj


def load_config(name_or_path: PathLike, group: str, _children: tuple = ()) -> dict:
    """Load ``configs/<group>/<name>.yaml`` (or a file path), following ``base:`` inheritance.

    ``base:`` is a shipped config name or a YAML path; a relative path names a file beside
    the config that says it, whatever the working directory."""
    path = resolve_config(name_or_path, group)
    chain = (*_children, path.resolve())
    if chain[-1] in _children:
        raise ConfigError("'base:' chain loops: " + " -> ".join(p.name for p in chain), _children[0])
    data = load_yaml(path)
    base = data.pop("base", None)
    if base is not None:
        beside = path.parent / str(base)
        parent = load_config(beside if beside.is_file() else base, group, chain)
        data = merge(parent, data)
    return data


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict:
    """Deep merge: mappings merge recursively, anything else in ``override`` replaces."""
    out = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def apply_overrides(cfg: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict:
    """Apply ``{"a.b.c": value}`` overrides; ``None`` values are ignored (an unset CLI option)."""
    out = copy.deepcopy(dict(cfg))
    for dotted, value in overrides.items():
        if value is None:
            continue
        node = out
        *parents, leaf = dotted.split(".")
        for key in parents:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(f"cannot set '{dotted}': '{key}' is not a mapping")
        node[leaf] = value
    return out


def check_keys(cfg: Mapping[str, Any], allowed: Iterable[str], where: str = "config",
               path: Optional[PathLike] = None) -> None:
    """Refuse unknown keys, suggesting the closest known one (a typo must not pass silently)."""
    allowed = list(allowed)
    for key in cfg:
        if key not in allowed:
            hint = did_you_mean(key, allowed)
            raise ConfigError(f"unknown key '{key}' in {where}{hint}", path)


def did_you_mean(word: str, candidates: Iterable[str]) -> str:
    """`` (did you mean 'X'?)`` for the closest candidate, or ``""``."""
    close = difflib.get_close_matches(word, list(candidates), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


_did_you_mean = did_you_mean  # the former private name, still imported elsewhere
