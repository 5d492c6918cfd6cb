"""Hugging Face hub ids wherever a weights path is taken.

``resolve(spec, files)`` turns what a user typed into a local path:

1. an existing local path always wins (a folder named like a hub id included);
2. ``hf://org/name[@revision][/path/in/repo]`` or a bare ``org/name[@revision]`` is a hub repo,
   fetched through ``huggingface_hub`` (``snapshot_download`` with ``allow_patterns`` limited to
   the files the caller needs), so the HF cache, ``HF_HOME``, ``HF_HUB_CACHE``,
   ``HF_HUB_OFFLINE`` and tokens behave as they do for every HF library;
3. anything else is returned as a path, for the caller's own "not found" error.

Nothing is fetched unless the user names a hub id. Every failure (offline and not cached, no
such repo or revision, gated, the hub unreachable, a partial cache) is one ``CheckpointError``
naming the repo and the ``hf download`` command that gets it. The revision lookup is bounded by
``HF_HUB_ETAG_TIMEOUT`` and file reads by ``HF_HUB_DOWNLOAD_TIMEOUT`` (huggingface_hub's own
settings), so a dead connection ends in an error, not a hang.

``HubFiles`` says what a caller needs: ``required`` files, ``optional`` patterns fetched when the
repo has them, and ``choices``: per component, alternative weight layouts in order of
preference (``model.safetensors``, else its shards, else ``pytorch_model.bin``), of which only
the first the repo has is fetched.
"""
from __future__ import annotations

import fnmatch
import functools
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, List, Mapping, Optional, Sequence, Tuple

from mmvgm.errors import CheckpointError, PathLike

HF_PREFIX = "hf://"
_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REVISION = r"[A-Za-z0-9][A-Za-z0-9._/-]*"
_BARE_ID = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<rev>{_REVISION}))?$")
_HF_URI = re.compile(rf"^(?P<repo>{_PART}/{_PART})(?:@(?P<rev>[A-Za-z0-9][A-Za-z0-9._-]*))?(?:/(?P<path>.+))?$")
_NOT_HUB = ("/", "./", "../", "~")
# A path inside a repo ending in one of these names a file; anything else names a folder.
FILE_SUFFIXES = (".safetensors", ".pth", ".pyth", ".pt", ".bin", ".ckpt", ".tar", ".json", ".yaml", ".yml")

Alternative = Tuple[str, ...]  # patterns; the first must match a file for the alternative to count


@dataclass(frozen=True)
class HubRef:
    """A parsed hub id: repo, revision (``None``: the default branch) and a path inside the repo."""

    repo_id: str
    revision: Optional[str] = None
    path: Optional[str] = None

    def __str__(self) -> str:
        text = self.repo_id + (f"@{self.revision}" if self.revision else "")
        return text + (f"/{self.path}" if self.path else "")


@dataclass(frozen=True)
class HubFiles:
    """The files a caller needs from a repo (patterns as in ``allow_patterns``)."""

    required: Tuple[str, ...] = ()
    optional: Tuple[str, ...] = ()
    choices: Tuple[Tuple[Alternative, ...], ...] = ()

    def patterns(self) -> List[str]:
        """Every pattern this set may fetch (what an offline lookup and ``hf download`` ask for)."""
        out = list(self.required) + list(self.optional)
        for group in self.choices:
            out += [p for alternative in group for p in alternative]
        return list(dict.fromkeys(out))

    def select(self, repo_files: Sequence[str]) -> Tuple[List[str], List[str]]:
        """``(files to fetch, what the repo lacks)`` given the repo's file list."""
        chosen = [f for f in repo_files if _matches_any(f, self.required + self.optional)]
        lacking = [r for r in self.required if not _matches_any_file(r, repo_files)]
        for group in self.choices:
            alternative = next((a for a in group if _matches_any_file(a[0], repo_files)), None)
            if alternative is None:
                lacking.append(" or ".join(a[0] for a in group))
            else:
                chosen += [f for f in repo_files if _matches_any(f, alternative)]
        return list(dict.fromkeys(chosen)), lacking

    def under(self, prefix: str) -> "HubFiles":
        """The same files inside the repo folder ``prefix`` (``hf://org/pipe/vae``)."""
        def add(patterns):
            return tuple(f"{prefix.rstrip('/')}/{p}" for p in patterns)

        return HubFiles(add(self.required), add(self.optional),
                        tuple(tuple(add(a) for a in group) for group in self.choices))

    def lacking(self, folder: Path) -> List[str]:
        """What a local snapshot folder lacks of this set (empty when it is complete)."""
        present = [p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file()]
        return self.select(present)[1]


def weight_alternatives(names: Sequence[str], prefix: str = "") -> Tuple[Alternative, ...]:
    """The layouts of weights saved as one of ``names``: each file alone, or its shards with their
    index (``model.safetensors.index.json`` + ``model-00001-of-00002.safetensors``)."""
    out: List[Alternative] = []
    for name in names:
        stem, dot, suffix = name.rpartition(".")
        out.append((f"{prefix}{name}",))
        out.append((f"{prefix}{name}.index.json", f"{prefix}{stem}-*-of-*{dot}{suffix}"))
    return tuple(out)


def hf_model_files(weight_names: Sequence[str] = ("model.safetensors", "pytorch_model.bin")) -> HubFiles:
    """An HF-format model folder (config, processor, weights as one of ``weight_names``)."""
    return HubFiles(optional=("config.json", "preprocessor_config.json"),
                    choices=(weight_alternatives(weight_names),))


HF_MODEL_FILES = hf_model_files()


_PROCESSING_CLASSES = ("Tokenizer", "Scheduler", "FeatureExtractor", "ImageProcessor", "Processor")


def pipeline_files(model_index: Mapping, components: Optional[Iterable[str]] = None) -> HubFiles:
    """The files of a diffusers pipeline's ``components`` (default: all in ``model_index.json``):
    configs and tokenizer files as they are, weights as safetensors when the repo has them."""
    wanted = set(components) if components is not None else None
    optional, choices = ["model_index.json"], []
    for name, value in model_index.items():
        if name.startswith("_") or not isinstance(value, list) or value[0] is None:
            continue
        if wanted is not None and name not in wanted:
            continue
        library, cls = value[0], str(value[1] if len(value) > 1 else "")
        optional += [f"{name}/*.json", f"{name}/*.txt", f"{name}/*.model"]
        if not any(k in cls for k in _PROCESSING_CLASSES):  # tokenizers and schedulers have no weights
            names = (("diffusion_pytorch_model.safetensors", "diffusion_pytorch_model.bin") if library == "diffusers"
                     else ("model.safetensors", "pytorch_model.bin"))
            choices.append(weight_alternatives(names, prefix=f"{name}/"))
    return HubFiles(required=("model_index.json",), optional=tuple(optional), choices=tuple(choices))


# ----------------------------------------------------------------------------- parsing

def parse_hub_id(spec: object) -> Optional[HubRef]:
    """The hub id in ``spec`` (``hf://org/name[@rev][/path]`` or ``org/name[@rev]``), else None."""
    if not isinstance(spec, str):
        return None
    text = spec.strip()
    if text.startswith(HF_PREFIX):
        match = _HF_URI.match(text[len(HF_PREFIX):])
        if match is None:
            raise CheckpointError(f"'{spec}' is not a hub id; expected hf://org/name[@revision][/path/in/repo]")
        return HubRef(match["repo"], match["rev"], match["path"])
    if text.startswith(_NOT_HUB) or "\\" in text:
        return None
    match = _BARE_ID.match(text)
    return HubRef(match["repo"], match["rev"]) if match else None


def is_hub_id(spec: object) -> bool:
    """True when ``spec`` (a string) names a hub repo and no local path of that name exists."""
    if not isinstance(spec, str) or Path(spec).expanduser().exists():
        return False
    return parse_hub_id(spec) is not None


def with_revision(spec: PathLike, revision: str) -> str:
    """``spec`` (a hub id) pinned to ``revision``."""
    ref = parse_hub_id(str(spec))
    if ref is None:
        raise CheckpointError(f"'{spec}' is not a hub id (org/name), so it has no revision to pick")
    return HF_PREFIX + str(HubRef(ref.repo_id, revision, ref.path))


def download_hint(ref: HubRef, files: Optional[HubFiles] = None) -> str:
    """The ``hf download`` command that puts what ``ref`` needs into the cache."""
    words = ["hf", "download", ref.repo_id]
    if ref.revision:
        words += ["--revision", ref.revision]
    patterns = [ref.path] if ref.path else (files.patterns() if files is not None else [])
    if patterns:
        words += ["--include", *patterns]
    return " ".join(shlex.quote(w) for w in words)


def pipeline_hint(ref: HubRef, components: Optional[Iterable[str]] = None) -> str:
    """The ``hf download`` command for a pipeline's ``components`` (all when None), before its
    ``model_index.json`` is known: their folders, without half-precision copies or other formats."""
    words = ["hf", "download", ref.repo_id]
    if ref.revision:
        words += ["--revision", ref.revision]
    if components is not None:
        words += ["--include", "model_index.json", *[f"{c}/*" for c in components]]
    words += ["--exclude", "*.fp16.*", "*.bin", "*.onnx*", "*.msgpack", "*.h5", "*.ckpt"]
    return " ".join(shlex.quote(w) for w in words)


# ----------------------------------------------------------------------------- resolving

def resolve(spec: Optional[PathLike], files: HubFiles = HF_MODEL_FILES, *,
            cache_dir: Optional[PathLike] = None) -> Optional[Path]:
    """A local path for ``spec``: the path itself when it exists, else a hub snapshot (see the
    module docstring). ``None`` stays ``None``."""
    if spec is None:
        return None
    local = Path(spec).expanduser()
    if local.exists() or not isinstance(spec, str):  # a pathlib.Path is always meant as a path
        return local
    ref = parse_hub_id(spec)
    if ref is None:
        return local
    if ref.path:
        is_file = Path(ref.path).suffix.lower() in FILE_SUFFIXES
        files = HubFiles(required=(ref.path,)) if is_file else files.under(ref.path)
    folder = _snapshot_once(ref, files, None if cache_dir is None else str(cache_dir))
    return folder / ref.path if ref.path else folder


@functools.lru_cache(maxsize=64)
def _snapshot_once(ref: HubRef, files: HubFiles, cache_dir: Optional[str]) -> Path:
    # A config and its weights are both read from one id (e.g. the processor statistics, then the
    # tensors): one lookup per process. Errors are not cached, so a retry looks again.
    return snapshot(ref, files, cache_dir=cache_dir)


def snapshot(ref: HubRef, files: HubFiles, *, cache_dir: Optional[PathLike] = None) -> Path:
    """The local snapshot folder of ``ref`` holding ``files``: from the cache when offline,
    else fetched (only the files chosen from the repo's listing)."""
    try:
        import huggingface_hub
    except ImportError:  # transformers needs it, so only a broken install lands here
        raise CheckpointError(f"{ref}: hub ids need the huggingface_hub package") from None
    if huggingface_hub.is_offline_mode():
        folder = _cached(ref, files, cache_dir, why="HF_HUB_OFFLINE is set")
    else:
        folder = _fetched(ref, files, cache_dir)
    lacking = files.lacking(folder)
    if lacking:
        raise CheckpointError(f"{ref}: the cached copy lacks {', '.join(lacking)}; "
                              f"get it with: {download_hint(ref, files)}")
    return folder


def _cached(ref: HubRef, files: HubFiles, cache_dir: Optional[PathLike], why: str) -> Path:
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                      allow_patterns=files.patterns(), local_files_only=True))
    except Exception as exc:  # noqa: BLE001 - LocalEntryNotFoundError, IncompleteSnapshotError, ...
        raise CheckpointError(f"{ref}: no local path of that name, and not in the Hugging Face cache "
                              f"({why}; {type(exc).__name__}); get it with: {download_hint(ref, files)}") from None


def _fetched(ref: HubRef, files: HubFiles, cache_dir: Optional[PathLike]) -> Path:
    from huggingface_hub import HfApi, constants, snapshot_download
    from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        info = HfApi().model_info(ref.repo_id, revision=ref.revision, timeout=constants.HF_HUB_ETAG_TIMEOUT)
    except GatedRepoError:
        raise CheckpointError(f"{ref}: the repo is gated; accept its terms on the hub and log in "
                              "(hf auth login, or set HF_TOKEN)") from None
    except RepositoryNotFoundError:
        raise CheckpointError(f"{ref}: no local path of that name, and no such repo on the Hugging Face hub "
                              "(or it is private: hf auth login, or set HF_TOKEN)") from None
    except RevisionNotFoundError:
        raise CheckpointError(f"{ref}: the repo has no revision '{ref.revision}'") from None
    except Exception as exc:  # noqa: BLE001 - connection errors differ between hub client versions
        return _cached(ref, files, cache_dir, why=f"the hub cannot be reached: {_first_line(exc)}")
    chosen, lacking = files.select([s.rfilename for s in info.siblings or ()])
    if lacking:
        raise CheckpointError(f"{ref}: the repo has no {', '.join(lacking)}; is it the right kind of model?")
    try:
        # The revision as typed (not info.sha), so the cache records refs/<revision> for offline use later.
        return Path(snapshot_download(ref.repo_id, revision=ref.revision, cache_dir=cache_dir,
                                      allow_patterns=chosen, etag_timeout=constants.HF_HUB_ETAG_TIMEOUT))
    except Exception as exc:  # noqa: BLE001 - a download cut off midway
        raise CheckpointError(f"{ref}: the download failed ({_first_line(exc)}); "
                              f"retry, or get it with: {download_hint(ref, files)}") from None


def read_model_index(spec: PathLike, *, cache_dir: Optional[PathLike] = None) -> Tuple[Path, dict]:
    """A pipeline's ``model_index.json`` (local folder, or fetched alone from the hub) and the
    folder it lies in."""
    folder = resolve(spec, HubFiles(required=("model_index.json",)), cache_dir=cache_dir)
    index = folder / "model_index.json"
    if not index.is_file():
        return folder, {}
    try:
        return folder, json.loads(index.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise CheckpointError(f"unreadable model_index.json ({exc})", index) from None


def resolve_pipeline(spec: Optional[PathLike], components: Optional[Iterable[str]] = None, *,
                     cache_dir: Optional[PathLike] = None) -> Optional[Path]:
    """A diffusers pipeline folder holding ``components`` (all when None): its
    ``model_index.json`` is read first, then only those components' files are fetched."""
    if spec is None or not is_hub_id(spec):
        return resolve(spec)
    _, index = read_model_index(spec, cache_dir=cache_dir)
    return resolve(spec, pipeline_files(index, components), cache_dir=cache_dir)


def resolve_model(spec: Optional[PathLike], components: Sequence[str],
                  weight_names: Sequence[str] = ("model.safetensors", "pytorch_model.bin"), *,
                  cache_dir: Optional[PathLike] = None) -> Optional[Path]:
    """A model that may come alone or inside a pipeline: for a hub repo with a
    ``model_index.json``, only ``components`` of the pipeline are fetched; otherwise the repo is
    one HF-format model whose weights are one of ``weight_names``."""
    if spec is None or not is_hub_id(spec):
        return resolve(spec)
    probe = resolve(spec, HubFiles(optional=("model_index.json", "config.json")), cache_dir=cache_dir)
    if (probe / "model_index.json").is_file():
        return resolve_pipeline(spec, components, cache_dir=cache_dir)
    return resolve(spec, hf_model_files(weight_names), cache_dir=cache_dir)


def _matches_any(name: str, patterns: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(name, p) for p in patterns)


def _matches_any_file(pattern: str, names: Iterable[str]) -> bool:
    return any(fnmatch.fnmatchcase(n, pattern) for n in names)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
