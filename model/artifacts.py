"""Saving and loading trained models: `.npz` (default, no pickle), `.pkl`, `.onnx`.

Beside every artifact `<file>` we write `<file>.sha256` (sha256sum format) and
`<file>.json` (the metadata). A `.pkl` is unpickled only when its digest matches the
`.sha256` file, because unpickling runs code; the other formats are checked against the
digest when it is present. A digest beside a file proves integrity, not who wrote it: a
server passes `trusted_pickles` (digests pinned by the operator or recorded by
`cinemate train`), and a `.pkl` whose digest is not among them is never unpickled. Its
digest is taken from the same open file that is then unpickled, so a file swapped in
meanwhile is not the one run.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from model.params import Params
from model.recommender import SUPPORTED_ARTIFACT_VERSIONS, TrainedModel

FORMATS = ("npz", "pkl", "onnx")
NPZ_LAYOUT = 1


class ArtifactError(Exception):
    """A model artifact cannot be saved or loaded."""


class ArtifactNotFoundError(ArtifactError, FileNotFoundError):
    pass


class ArtifactFormatError(ArtifactError):
    """The file is not a valid artifact of its format (corrupt, truncated, wrong kind)."""


class ArtifactIntegrityError(ArtifactError):
    """The file's SHA-256 is missing or does not match its recorded digest."""


class ArtifactUntrustedError(ArtifactIntegrityError):
    """A pickle whose SHA-256 nobody trusted: unpickling it would run whatever it holds."""


def artifact_format(path: Path | str) -> str:
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise ArtifactError(f"{path}: unsupported artifact suffix; use .npz, .pkl or .onnx")
    return suffix


def digest_path(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def metadata_path(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def file_sha256(path: Path) -> str:
    with path.open("rb") as handle:
        return _sha256_of(handle)


def _sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def save_model(model: TrainedModel, path: Path | str) -> Path:
    """Write `model` in the format its suffix names, plus the two sidecars; returns path.

    Files are written to a temporary name and renamed, so a reader never sees a half
    written artifact.
    """
    target = Path(path)
    fmt = artifact_format(target)
    metadata = {**model.metadata, "format": fmt}
    writers: dict[str, Callable[[TrainedModel, dict[str, Any], Path], None]] = {
        "npz": _write_npz,
        "pkl": _write_pkl,
        "onnx": _write_onnx,
    }
    target.parent.mkdir(parents=True, exist_ok=True)
    _atomic_write(target, lambda tmp: writers[fmt](model, metadata, tmp))
    digest = file_sha256(target)
    _atomic_text(digest_path(target), f"{digest}  {target.name}\n")
    sidecar = {**metadata, "sha256": digest, "file": target.name}
    _atomic_text(metadata_path(target), json.dumps(sidecar, indent=2, default=_plain) + "\n")
    return target


def load_model(path: Path | str, *, trusted_pickles: Collection[str] | None = None) -> TrainedModel:
    """Load an artifact; raises an `ArtifactError` subclass for anything unusable. With
    `trusted_pickles`, a `.pkl` loads only if its SHA-256 is one of them."""
    source = Path(path)
    fmt = artifact_format(source)
    if not source.is_file():
        raise ArtifactNotFoundError(f"{source}: no such model artifact")
    if fmt == "pkl":
        with source.open("rb") as handle:
            digest = _verify_digest(source, required=True, actual=_sha256_of(handle))
            if trusted_pickles is not None and digest not in trusted_pickles:
                raise ArtifactUntrustedError(
                    f"{source}: a .pkl is unpickled only when its SHA-256 is pinned"
                    " (MODEL_SHA256) or was recorded by `cinemate train`"
                )
            handle.seek(0)
            model = _read_pkl(source, handle)
    else:
        digest = _verify_digest(source, required=False)
        readers: dict[str, Callable[[Path], TrainedModel]] = {
            "npz": _read_npz,
            "onnx": _read_onnx,
        }
        model = readers[fmt](source)
    model.metadata["format"] = fmt
    model.metadata["sha256"] = digest
    return model


def _verify_digest(path: Path, required: bool, actual: str | None = None) -> str:
    actual = actual or file_sha256(path)
    recorded_file = digest_path(path)
    if not recorded_file.is_file():
        if required:
            raise ArtifactIntegrityError(
                f"{path}: refusing to unpickle without a recorded digest ({recorded_file.name})"
            )
        return actual
    words = recorded_file.read_text(encoding="utf-8").split()
    recorded = words[0].lower() if words else ""
    if recorded != actual:
        raise ArtifactIntegrityError(
            f"{path}: SHA-256 {actual} does not match the recorded digest "
            f"{recorded or '(empty)'} in {recorded_file.name}; refusing to load"
        )
    return actual


def _write_npz(model: TrainedModel, metadata: dict[str, Any], path: Path) -> None:
    with path.open("wb") as handle:
        np.savez(
            handle,
            layout=np.asarray(NPZ_LAYOUT, dtype=np.int64),
            matrix=model.matrix,
            item_ids=np.asarray(model.item_ids, dtype=str),
            popularity=model.popularity,
            metadata=np.asarray([json.dumps(metadata, default=_plain)]),
        )


def _read_npz(path: Path) -> TrainedModel:
    try:
        with np.load(path, allow_pickle=False) as archive:
            layout = int(archive["layout"])
            if layout != NPZ_LAYOUT:
                raise ArtifactFormatError(f"{path}: unsupported npz layout {layout}")
            matrix = np.asarray(archive["matrix"], dtype=np.float32)
            item_ids = [str(item) for item in archive["item_ids"].tolist()]
            popularity = np.asarray(archive["popularity"], dtype=np.float32)
            metadata = json.loads(str(archive["metadata"][0]))
    except ArtifactFormatError:
        raise
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile) as exc:
        raise ArtifactFormatError(f"{path}: not a valid .npz model artifact ({exc})") from exc
    return _build(path, item_ids, matrix, popularity, metadata)


def _write_pkl(model: TrainedModel, metadata: dict[str, Any], path: Path) -> None:
    import joblib

    from model.estimator import SeqEaseEstimator

    estimator = SeqEaseEstimator.from_model(model)
    estimator.metadata_json_ = json.dumps(metadata, default=_plain)
    joblib.dump(estimator, path)


def _read_pkl(path: Path, handle: BinaryIO) -> TrainedModel:
    import joblib

    from model.estimator import SeqEaseEstimator

    try:
        estimator = joblib.load(handle)
    except Exception as exc:  # unpickling fails in many ways; all mean "bad file"
        raise ArtifactFormatError(f"{path}: not a valid .pkl model artifact ({exc})") from exc
    if not isinstance(estimator, SeqEaseEstimator):
        raise ArtifactFormatError(
            f"{path}: holds a {type(estimator).__name__}, not a SeqEaseEstimator"
        )
    try:
        item_ids = [str(item) for item in estimator.item_ids_.tolist()]
        matrix = np.asarray(estimator.matrix_, dtype=np.float32)
        popularity = np.asarray(estimator.popularity_, dtype=np.float32)
        metadata = json.loads(estimator.metadata_json_)
    except (AttributeError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise ArtifactFormatError(f"{path}: incomplete .pkl model artifact ({exc})") from exc
    return _build(path, item_ids, matrix, popularity, metadata)


def _write_onnx(model: TrainedModel, metadata: dict[str, Any], path: Path) -> None:
    from model.onnx_graph import build_graph

    proto = build_graph(model.matrix, list(model.item_ids), model.popularity, metadata)
    path.write_bytes(proto.SerializeToString())


def _read_onnx(path: Path) -> TrainedModel:
    try:
        import onnx

        from model.onnx_graph import OnnxScorer, read_graph
    except ImportError as exc:
        raise ArtifactError(f"{path}: loading .onnx needs onnx and onnxruntime ({exc})") from exc
    raw = path.read_bytes()
    try:
        proto = onnx.load_from_string(raw)
        matrix, item_ids, popularity, metadata = read_graph(proto)
        scorer = OnnxScorer(raw)
    except Exception as exc:  # protobuf and onnxruntime raise their own exception types
        raise ArtifactFormatError(f"{path}: not a valid .onnx model artifact ({exc})") from exc
    return _build(path, item_ids, matrix, popularity, metadata).with_scorer(scorer)


def _build(
    path: Path,
    item_ids: list[str],
    matrix: np.ndarray,
    popularity: np.ndarray,
    metadata: dict[str, Any],
) -> TrainedModel:
    if not isinstance(metadata, dict):
        raise ArtifactFormatError(f"{path}: metadata is not a JSON object")
    # Version 1 (one blended block, no value_power) is read by the version 2 rules with
    # the defaults that describe it; anything newer may mean something this reader
    # would score differently, so it is refused rather than guessed at.
    version = metadata.get("artifact_version", 1)
    if version not in SUPPORTED_ARTIFACT_VERSIONS:
        supported = ", ".join(str(v) for v in SUPPORTED_ARTIFACT_VERSIONS)
        raise ArtifactFormatError(
            f"{path}: artifact_version {version!r} is not one this reader scores "
            f"(supported: {supported}); retrain with this version or upgrade the reader"
        )
    try:
        return TrainedModel(
            item_ids, matrix, popularity, Params.from_dict(metadata.get("params", {})), metadata
        )
    except (ValueError, TypeError) as exc:
        raise ArtifactFormatError(f"{path}: inconsistent model artifact ({exc})") from exc


def _atomic_write(target: Path, write: Callable[[Path], object]) -> None:
    handle, name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(handle)
    tmp = Path(name)
    try:
        write(tmp)
        # mkstemp creates 0600 files; artifacts are read by other service processes.
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _atomic_text(target: Path, text: str) -> None:
    _atomic_write(target, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")
