"""Trained models on disk, with the metadata needed to trust them.

Layout under a model directory (say `<data_dir>/models`):

    <name>/<version>/model.pkl    the fitted estimator (pickle)
    <name>/<version>/model.json   its ModelInfo: training window, rows,
                                  features, threshold, library versions
    <name>/CURRENT                the version detectors use

A version is written to a temporary directory and renamed into place, and
CURRENT is replaced atomically, so a detector polling the directory never
reads half a model. Model files are produced locally by training; pickle
runs code when loaded, so never point `model_dir` at files from elsewhere.

Where models are kept is a `ModelStore`: a model directory
(`DirectoryModelStore`, the layout above, for offline training and tests)
or the server's database (`SharedModelStore` over `ModelBlobs`, implemented
in uba.storage.trained_models), which every process of a deployment reads,
so the process that trains and the processes that score use one model.
The database is then as trusted as the data dir: whoever can write it can
make every process unpickle their bytes.

Standard library only; unpickling imports the estimator's library.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import tempfile
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

FORMAT = 1
MODEL_FILE = "model.pkl"
INFO_FILE = "model.json"
CURRENT_FILE = "CURRENT"


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What a trained model is and what it was trained on."""

    name: str  # the detector, e.g. "isolation_forest"
    version: str  # "20260301T120000Z": sortable, the training time (UTC)
    created_at: str  # ISO 8601 UTC
    # Occurrence times (ISO 8601 UTC) of the first and last event replayed.
    window_start: str | None
    window_end: str | None
    events: int  # events replayed
    rows: int  # feature rows the model was fitted on (a sample of them)
    features: tuple[str, ...]
    features_version: str
    # Scores (higher = more anomalous) at or above `threshold` are anomalies;
    # at or above `high_threshold` they are more severe. Quantiles of the
    # training scores: 1 - contamination and 1 - contamination / 10.
    threshold: float
    high_threshold: float
    contamination: float
    # Per-feature medians of the training rows, to explain a score by
    # replacing one feature at a time with its typical value.
    medians: tuple[float, ...] = ()
    params: dict[str, Any] = field(default_factory=dict)
    libraries: dict[str, str] = field(default_factory=dict)
    training_seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = FORMAT
        data["features"] = list(self.features)
        data["medians"] = list(self.medians)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelInfo:
        if data.get("format") != FORMAT:
            raise ValueError(f"unsupported model metadata format {data.get('format')!r}")
        values = {k: v for k, v in data.items() if k != "format"}
        values["features"] = tuple(values["features"])
        values["medians"] = tuple(float(m) for m in values.get("medians", ()))
        return cls(**values)


def new_version(now: datetime | None = None) -> str:
    return (now or datetime.now(UTC)).astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def save_model(
    model_dir: str | os.PathLike,
    info: ModelInfo,
    estimator: Any,
    *,
    make_current: bool = True,
    keep: int = 5,
) -> ModelInfo:
    """Writes the estimator and its metadata as a new version of
    `info.name`, makes it current, and keeps the `keep` newest versions.
    Returns the info as saved (the version gets a suffix if taken)."""
    base = Path(model_dir) / info.name
    base.mkdir(parents=True, exist_ok=True)
    version, n = info.version, 1
    while (base / version).exists():
        n += 1
        version = f"{info.version}-{n}"
    if version != info.version:
        info = replace(info, version=version)
    staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=base))
    try:
        with open(staging / MODEL_FILE, "wb") as f:
            pickle.dump(estimator, f, protocol=pickle.HIGHEST_PROTOCOL)
        (staging / INFO_FILE).write_text(
            json.dumps(info.to_dict(), indent=2, sort_keys=True) + "\n"
        )
        os.rename(staging, base / version)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if make_current:
        set_current(model_dir, info.name, version)
    prune(model_dir, info.name, keep)
    return info


def set_current(model_dir: str | os.PathLike, name: str, version: str) -> None:
    """Points CURRENT at `version` (atomically)."""
    base = Path(model_dir) / name
    if not (base / version / INFO_FILE).is_file():
        raise FileNotFoundError(f"no model {name} version {version} in {model_dir}")
    fd, tmp = tempfile.mkstemp(prefix=".CURRENT.", dir=base)
    with os.fdopen(fd, "w") as f:
        f.write(version + "\n")
    os.replace(tmp, base / CURRENT_FILE)


def current_version(model_dir: str | os.PathLike, name: str) -> str | None:
    """The version in use, or None when none was trained yet."""
    try:
        return (Path(model_dir) / name / CURRENT_FILE).read_text().strip() or None
    except FileNotFoundError:
        return None


def read_info(model_dir: str | os.PathLike, name: str, version: str) -> ModelInfo:
    return ModelInfo.from_dict(
        json.loads((Path(model_dir) / name / version / INFO_FILE).read_text())
    )


def load_model(
    model_dir: str | os.PathLike, name: str, version: str | None = None
) -> tuple[Any, ModelInfo]:
    """The estimator and info of `version` (default: the current one).
    FileNotFoundError when there is none."""
    version = version or current_version(model_dir, name)
    if version is None:
        raise FileNotFoundError(f"no trained {name} model in {model_dir}")
    info = read_info(model_dir, name, version)
    with open(Path(model_dir) / name / version / MODEL_FILE, "rb") as f:
        estimator = pickle.load(f)  # noqa: S301 - local files written by save_model
    return estimator, info


def list_models(model_dir: str | os.PathLike, name: str) -> list[ModelInfo]:
    """Infos of the stored versions, newest first."""
    base = Path(model_dir) / name
    if not base.is_dir():
        return []
    versions = sorted(
        (p.name for p in base.iterdir() if p.is_dir() and not p.name.startswith(".")), reverse=True
    )
    return [read_info(model_dir, name, v) for v in versions if (base / v / INFO_FILE).is_file()]


def prune(model_dir: str | os.PathLike, name: str, keep: int) -> None:
    """Deletes all but the `keep` newest versions, never the current one."""
    current = current_version(model_dir, name)
    for info in list_models(model_dir, name)[max(keep, 1) :]:
        if info.version != current:
            shutil.rmtree(Path(model_dir) / name / info.version, ignore_errors=True)


# -- where models are kept ------------------------------------------------------------


class ModelStore(Protocol):
    """Where a detector finds its current model and saves new ones."""

    def current_version(self, name: str) -> str | None:
        """The version in use, or None when none was trained yet."""
        ...

    def load(self, name: str, version: str) -> tuple[Any, ModelInfo]:
        """The estimator and info of a stored version."""
        ...

    def save(self, info: ModelInfo, estimator: Any, *, keep: int = 5) -> ModelInfo:
        """Stores a new version and makes it current; returns the info as
        saved (the version gets a suffix if taken)."""
        ...

    def describe(self) -> str:
        """Where, for log lines."""
        ...


class DirectoryModelStore:
    """Models as files under a model directory (the layout above)."""

    def __init__(self, model_dir: str | os.PathLike):
        self.model_dir = model_dir

    def current_version(self, name: str) -> str | None:
        return current_version(self.model_dir, name)

    def load(self, name: str, version: str) -> tuple[Any, ModelInfo]:
        return load_model(self.model_dir, name, version)

    def save(self, info: ModelInfo, estimator: Any, *, keep: int = 5) -> ModelInfo:
        return save_model(self.model_dir, info, estimator, keep=keep)

    def describe(self) -> str:
        return str(self.model_dir)


class ModelBlobs(Protocol):
    """Model versions as metadata and bytes, in storage shared by every
    process (uba.storage.trained_models.ModelRepository)."""

    def newest_version(self, name: str) -> str | None: ...

    def read(self, name: str, version: str) -> tuple[dict[str, Any], bytes]:
        """KeyError when there is no such version."""
        ...

    def add(self, name: str, version: str, info: dict[str, Any], payload: bytes) -> bool:
        """Stores a version as the newest; False (nothing stored) when the
        version is taken."""
        ...

    def prune(self, name: str, keep: int) -> int:
        """Deletes all but the `keep` newest versions; returns how many."""
        ...


class SharedModelStore:
    """Models in the database: the newest version is the current one, for
    every process that reads it."""

    def __init__(self, blobs: ModelBlobs, where: str = "the database"):
        self.blobs = blobs
        self.where = where

    def current_version(self, name: str) -> str | None:
        return self.blobs.newest_version(name)

    def load(self, name: str, version: str) -> tuple[Any, ModelInfo]:
        data, payload = self.blobs.read(name, version)
        info = ModelInfo.from_dict(data)
        # Bytes written by save() of a process of this deployment (see the
        # module docstring on trust).
        return pickle.loads(payload), info  # noqa: S301

    def save(self, info: ModelInfo, estimator: Any, *, keep: int = 5) -> ModelInfo:
        payload = pickle.dumps(estimator, protocol=pickle.HIGHEST_PROTOCOL)
        return self._add(info, payload, keep)

    def _add(self, info: ModelInfo, payload: bytes, keep: int) -> ModelInfo:
        base, n = info.version, 1
        # Two processes training in the same second: the second one's gets a suffix.
        while not self.blobs.add(info.name, info.version, info.to_dict(), payload):
            n += 1
            info = replace(info, version=f"{base}-{n}")
        self.blobs.prune(info.name, max(keep, 1))
        return info

    def import_directory(self, model_dir: str | os.PathLike, name: str) -> ModelInfo | None:
        """Copies the current model of a model directory in (as bytes, not
        unpickled) when this store has none of `name` yet: models trained
        before they moved to the database keep scoring. Returns the copied
        info, or None when there was nothing to copy."""
        if self.current_version(name) is not None:
            return None
        version = current_version(model_dir, name)
        if version is None:
            return None
        info = read_info(model_dir, name, version)
        payload = (Path(model_dir) / name / version / MODEL_FILE).read_bytes()
        return self._add(info, payload, keep=5)

    def describe(self) -> str:
        return self.where
