"""The library index: verification results are kept, hashing reports progress and can be cancelled,
folders are searched for models, and an index from before those columns still opens."""

from __future__ import annotations

import shutil
import sqlite3
import threading

import pytest

from quantdesk.library.index import HashingCancelled, Library, find_ggufs


@pytest.fixture
def model_copy(tmp_path, tiny_model):
    path = tmp_path / "user-models" / "tiny-F16.gguf"
    path.parent.mkdir()
    shutil.copy(tiny_model, path)
    return path


def _flip_byte(path, offset: int = 4096) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_a_failed_verification_is_recorded_until_a_later_one_passes(model_copy):
    library = Library()
    model = library.import_file(model_copy)
    assert library.get(model.name).verified
    _flip_byte(model_copy)
    _, problems = library.verify(model.name)
    assert len(problems) == 1 and "does not match the recorded" in problems[0]
    stored = library.get(model.name)
    assert not stored.verified and stored.verified_at is None and stored.problems == problems
    assert stored.to_json()["problems"] == problems
    _flip_byte(model_copy)  # flipped back: the file is whole again
    assert library.verify(model.name)[1] == []
    assert library.get(model.name).verified and library.get(model.name).problems == []


def test_a_missing_file_fails_verification(model_copy):
    library = Library()
    model = library.import_file(model_copy)
    model_copy.unlink()
    assert library.verify(model.name)[1] == [f"{model_copy}: missing"]
    assert not library.get(model.name).verified


def test_hashing_reports_progress_and_a_cancel_records_nothing(model_copy):
    library = Library()
    seen: list[tuple[int, int]] = []
    model = library.import_file(model_copy, progress=lambda done, total: seen.append((done, total)))
    size = model_copy.stat().st_size
    assert seen and seen[-1] == (size, size) and all(total == size for _, total in seen)
    seen.clear()
    library.verify(model.name, progress=lambda done, total: seen.append((done, total)))
    assert seen[-1] == (size, size)
    verified_at = library.get(model.name).verified_at
    cancel = threading.Event()
    cancel.set()
    with pytest.raises(HashingCancelled):
        library.verify(model.name, cancel=cancel)
    assert library.get(model.name).verified_at == verified_at
    other = model_copy.with_name("other-F16.gguf")
    shutil.copy(model_copy, other)
    with pytest.raises(HashingCancelled):
        library.import_file(other, cancel=cancel)
    assert library.find(str(other)) is None


def test_find_ggufs_searches_folders_and_names_a_split_model_once(tmp_path):
    cache = tmp_path / "cache"
    (cache / "org" / "repo" / "snapshots" / "abc").mkdir(parents=True)
    single = cache / "org" / "repo" / "snapshots" / "abc" / "Model-Q4_K_M.GGUF"
    single.write_bytes(b"x")
    parts = [cache / "big" / f"Big-Q8_0-{i:05d}-of-00003.gguf" for i in (1, 2, 3)]
    parts[0].parent.mkdir()
    for p in parts:
        p.write_bytes(b"x")
    (cache / "README.md").write_text("not a model")
    (cache / "blob").write_bytes(b"GGUF")  # a hash-named blob: not picked up
    orphan = tmp_path / "Half-00002-of-00002.gguf"
    orphan.write_bytes(b"x")
    picked = tmp_path / "notes.txt"
    picked.write_text("picked by name")
    found = find_ggufs([cache, str(parts[2]), orphan, picked])
    assert found == [parts[0], single, orphan, picked]


def test_an_index_from_before_verification_results_opens_and_upgrades(_isolated_home, model_copy):
    old = _isolated_home / "library.db"
    _isolated_home.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(old) as db:
        db.execute("CREATE TABLE models (name TEXT PRIMARY KEY, repo TEXT, quant TEXT, size INTEGER NOT NULL,"
                   " sha256 TEXT NOT NULL, source TEXT NOT NULL, files TEXT NOT NULL, source_sha256 TEXT,"
                   " added_at REAL NOT NULL, verified_at REAL)")
        db.execute("INSERT INTO models VALUES ('old', NULL, 'F16', 1, 'ab', 'imported', '[{\"path\": \"/x\"}]',"
                   " NULL, 1.0, 2.0)")
    db.close()
    library = Library()
    (model,) = library.models()
    assert model.name == "old" and model.verified and model.problems == []
    library.import_file(model_copy)
    assert len(library.models()) == 2


def test_import_paths_adds_models_lists_broken_files_and_knows_what_it_has(tmp_path, model_copy):
    folder = model_copy.parent
    (folder / "nested").mkdir()
    (folder / "nested" / "broken-Q4_K_M.gguf").write_bytes(b"not a gguf at all" * 100)
    (folder / "nested" / "empty.gguf").write_bytes(b"")
    library = Library()
    seen: list[tuple[int, int, str]] = []
    outcome = library.import_paths([folder], progress=lambda done, total, path: seen.append((done, total, path.name)))
    assert [m.path for m in outcome.imported] == [str(model_copy)] and not outcome.cancelled
    assert sorted(p.name for p, _ in outcome.failed) == ["broken-Q4_K_M.gguf", "empty.gguf"]
    assert all("GGUF" in why for _, why in outcome.failed)
    assert [m.path for m in library.models()] == [str(model_copy)]
    total = seen[-1][1]
    assert seen[-1][0] == total and total >= model_copy.stat().st_size
    assert [d for d, _, _ in seen] == sorted(d for d, _, _ in seen)  # progress only moves forward
    again = library.import_paths([model_copy])
    assert again.imported == [] and [m.name for m in again.known] == [outcome.imported[0].name]


def test_a_cancelled_import_keeps_what_came_before_it(tmp_path, model_copy):
    second = model_copy.with_name("zz-second-F16.gguf")
    shutil.copy(model_copy, second)
    cancel = threading.Event()

    def progress(done, total, path):
        if path == model_copy:  # after its only 8 MiB chunk: the first file is done, the next never starts
            cancel.set()

    outcome = Library().import_paths([model_copy.parent], progress=progress, cancel=cancel)
    assert outcome.cancelled and [m.path for m in outcome.imported] == [str(model_copy)]
    assert [m.path for m in Library().models()] == [str(model_copy)]
