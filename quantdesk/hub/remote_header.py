"""GGUF headers of hub files read with HTTP range requests: plan a quant before downloading it."""

from __future__ import annotations

from quantdesk.base.errors import QuantDeskError
from quantdesk.gguf.model_info import ModelInfo, model_info_from_headers
from quantdesk.gguf.reader import GGUFHeader, read_header_with
from quantdesk.hub.client import RepoGGUF
from quantdesk.hub.credentials import hub_token
from quantdesk.hub.endpoint import hub_endpoint
from quantdesk.hub.errors import retry_deadline, translate_hub_error
from quantdesk.hub.session import hub_deadline, hub_session


def read_remote_header(repo_id: str, path: str, size: int, revision: str | None = None) -> GGUFHeader:
    from huggingface_hub import hf_hub_url
    from huggingface_hub.utils import build_hf_headers, hf_raise_for_status

    url = hf_hub_url(repo_id, path, revision=revision, endpoint=hub_endpoint())
    headers = build_hf_headers(token=hub_token())
    session = hub_session()

    def read_range(start: int, end: int) -> bytes:
        want = end - start
        try:
            with session.stream("GET", url, headers={**headers, "Range": f"bytes={start}-{end - 1}"},
                                follow_redirects=True) as response:
                hf_raise_for_status(response)
                chunks, got = [], 0
                skip = start if response.status_code == 200 else 0  # server ignored Range
                for chunk in response.iter_bytes():
                    if skip:
                        drop = min(skip, len(chunk))
                        chunk, skip = chunk[drop:], skip - drop
                    chunks.append(chunk)
                    got += len(chunk)
                    if got >= want:
                        break
        except QuantDeskError:
            raise
        except Exception as exc:
            raise translate_hub_error(exc, f"{repo_id}/{path}") from None
        data = b"".join(chunks)[:want]
        if len(data) < want:
            raise QuantDeskError(f"{repo_id}/{path}: the hub sent {len(data)} of {want} header bytes")
        return data

    with hub_deadline(retry_deadline()):  # a hub that stops answering mid-header is told in seconds
        return read_header_with(read_range, size, f"{repo_id}/{path}")


def remote_model_info(repo_id: str, entry: RepoGGUF, revision: str | None = None) -> ModelInfo:
    headers = [read_remote_header(repo_id, p.path, p.size, revision) for p in entry.parts]
    return model_info_from_headers(headers, [p.path for p in entry.parts], entry.size)
