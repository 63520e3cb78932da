"""Assembly and verification of the embedded model file, with small stand-in parts."""

from __future__ import annotations

import hashlib

import pytest

from preflens import ModelFileError
from preflens.llm import model_files


@pytest.fixture
def fake_parts(tmp_path, monkeypatch):
    parts = []
    for i in range(3):
        part = tmp_path / f"part{i}.bin"
        part.write_bytes(bytes([i]) * 1000)
        parts.append(part)
    whole = b"".join(p.read_bytes() for p in parts)
    monkeypatch.setattr(model_files, "part_paths", lambda: parts)
    monkeypatch.setattr(model_files, "MODEL_SHA256", hashlib.sha256(whole).hexdigest())
    monkeypatch.setattr(model_files, "MODEL_SIZE", len(whole))
    return parts, whole


def test_assembles_once_and_verifies(tmp_path, fake_parts):
    parts, whole = fake_parts
    path = model_files.embedded_model_path(tmp_path / "models")
    assert path.read_bytes() == whole
    mtime = path.stat().st_mtime_ns
    assert model_files.embedded_model_path(tmp_path / "models") == path
    assert path.stat().st_mtime_ns == mtime  # not assembled again
    assert not list((tmp_path / "models").glob("*.part"))


def test_refuses_a_checksum_mismatch_and_leaves_nothing(tmp_path, fake_parts):
    parts, _ = fake_parts
    parts[1].write_bytes(b"tampered")
    with pytest.raises(ModelFileError, match="checksum does not match"):
        model_files.embedded_model_path(tmp_path / "models")
    assert list((tmp_path / "models").iterdir()) == []


def test_missing_wheel_says_how_to_install(monkeypatch):
    monkeypatch.setattr(model_files, "PART_PACKAGE", "preflens_no_such_package_{}")
    with pytest.raises(ModelFileError, match=r"pip install 'preflens\[local\]'"):
        model_files.part_paths()
