"""A failed download's kind and facts become the right sentence and next step; the errors are the
downloader's real ones, provoked against the fake hub, and no sentence is parsed back."""

from __future__ import annotations

import hashlib

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.hub.client import RepoFilePart
from quantdesk.library import download as downloader
from quantdesk.library.download import check_disk, download_part
from quantdesk.library.failure import ChecksumMismatch, explain_failure

REPO = "someorg/Failure-Test-GGUF"
DATA = b"GGUF" + bytes(range(256)) * 400


def _error_of(fn) -> QuantDeskError:
    with pytest.raises(QuantDeskError) as info:
        fn()
    return info.value


def _download(part: RepoFilePart, repo: str = REPO) -> QuantDeskError:
    return _error_of(lambda: list(download_part(repo, part)))


def _part(name: str = "m-Q4_K_M.gguf") -> RepoFilePart:
    return RepoFilePart(name, len(DATA), hashlib.sha256(DATA).hexdigest())


def test_checksum_mismatch_names_the_file_and_both_hashes(fake_hub):
    fake_hub.add_repo(REPO, {"m-Q4_K_M.gguf": DATA})
    fake_hub.set_fault(REPO, "m-Q4_K_M.gguf", corrupt_byte_at=100)
    failure = explain_failure(_download(_part()), "m-Q4_K_M.gguf", REPO)
    expected = hashlib.sha256(DATA).hexdigest()
    damaged = bytearray(DATA)
    damaged[100] ^= 0xFF
    actual = hashlib.sha256(damaged).hexdigest()
    assert failure.kind == "checksum" and "m-Q4_K_M.gguf" in failure.sentence
    assert "did not match the hub's checksum" in failure.sentence and expected not in failure.sentence
    assert f"Expected SHA-256 {expected}, got {actual}" in failure.details
    assert failure.next_step.startswith("Retry downloads it again")


def test_no_disk_says_how_much_to_free_and_where_to_move_the_models():
    huge = RepoFilePart("big.gguf", 1 << 60, "ab")
    failure = explain_failure(_error_of(lambda: check_disk([huge], REPO)), "big.gguf", REPO)
    assert failure.kind == "disk" and "big.gguf" in failure.sentence
    assert failure.next_step.startswith("Free ") and "GiB" in failure.next_step and "Settings" in failure.next_step


def test_a_dead_network_says_check_the_connection(monkeypatch):
    monkeypatch.setattr(downloader, "MAX_ATTEMPTS", 0)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # the discard port: nothing listens
    failure = explain_failure(_download(_part()), "m-Q4_K_M.gguf", REPO)
    assert failure.kind == "network" and "Check the network connection" in failure.next_step


def test_a_gated_repo_asks_for_a_token(fake_hub):
    fake_hub.add_repo(REPO, {"m-Q4_K_M.gguf": DATA}, gated=True)
    failure = explain_failure(_download(_part()), "m-Q4_K_M.gguf", REPO)
    assert failure.kind == "access" and "token" in failure.next_step


def test_a_file_gone_from_the_hub(fake_hub):
    fake_hub.add_repo(REPO, {"other.gguf": DATA})
    failure = explain_failure(_download(_part()), "m-Q4_K_M.gguf", REPO)
    assert failure.kind == "missing" and "Discover" in failure.next_step


def test_a_disk_filling_midway_says_it_resumes():
    failure = explain_failure(downloader._disk_full(OSError(28, "No space left on device")), "m.gguf", REPO)
    assert failure.kind == "disk" and "resumes" in failure.next_step


def test_the_kind_survives_rewording_the_message():
    reworded = ChecksumMismatch("Les octets ne correspondent pas", file="m.gguf", expected="aa", actual="bb")
    failure = explain_failure(reworded, "m.gguf", REPO)
    assert failure.kind == "checksum" and "Expected SHA-256 aa, got bb" in failure.details


def test_anything_else_keeps_its_text_and_offers_a_retry():
    failure = explain_failure(RuntimeError("boom"), "m.gguf", REPO)
    assert failure.kind == "other" and failure.sentence == "The download of m.gguf failed (unexpected error: " \
        "RuntimeError: boom)."
    assert failure.next_step == "Retry to try again."  # no claim about partial files it cannot know


def test_a_page_served_as_a_model_says_pick_another_file(fake_hub):
    from quantdesk.hub.client import list_repo_ggufs
    from quantdesk.library.download import download_model

    fake_hub.add_repo(REPO, {"m-Q4_K_M.gguf": b"<html>oops</html>" * 700_000})
    (entry,) = list_repo_ggufs(REPO)
    failure = explain_failure(_error_of(lambda: list(download_model(REPO, entry))), "m-Q4_K_M.gguf", REPO)
    assert failure.kind == "invalid" and "not a usable GGUF model" in failure.sentence
    assert "pick another file" in failure.next_step
