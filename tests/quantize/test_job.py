"""The job the app and the CLI run: pre-flight per kind of source, events in order, library entry."""

from __future__ import annotations

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.library.index import Library
from quantdesk.planning.quantize_cost import Preflight
from quantdesk.quantize.evaluate import eval_problem
from quantdesk.quantize.job import Registered, SourceReady, check_job, run_job
from quantdesk.quantize.quantizer import QuantizeResult, Started, TensorProgress


def test_check_names_the_kind_of_source(tiny_model):
    by_file = check_job(str(tiny_model), "Q4_K_M", evaluate_quality=True)
    assert by_file.kind == "file" and by_file.label == "tiny-F16.gguf" and by_file.ok
    assert by_file.eval_ram > tiny_model.stat().st_size and by_file.download_bytes == 0
    assert by_file.preflight.output.name == "tiny-Q4_K_M.gguf"
    name = Library().import_file(tiny_model).name
    by_name = check_job(name, "Q8_0")
    assert by_name.kind == "library" and by_name.label == name and by_name.eval_ram is None


def test_check_of_a_repo_reads_the_header_only(fake_hub, small_model):
    repo = "org/Small-GGUF"
    fake_hub.add_repo(repo, {"Small-F16.gguf": small_model})
    check = check_job(repo, "Q4_K_M")
    assert check.kind == "repo" and check.label == f"{repo}: Small-F16.gguf" and check.ok
    assert check.download_bytes == small_model.stat().st_size
    assert fake_hub.bytes_served.get((repo, "Small-F16.gguf"), 0) < small_model.stat().st_size
    assert Library().models() == []


def test_check_refuses_what_cannot_be_used(tiny_model, tmp_path):
    with pytest.raises(QuantDeskError, match="importance matrix"):
        check_job(str(tiny_model), "IQ2_XS")
    with pytest.raises(QuantDeskError, match="not a file, a library model or a hub repo id"):
        check_job("no such thing", "Q4_K_M")
    with pytest.raises(QuantDeskError, match="no such file"):
        check_job(str(tmp_path / "gone.gguf"), "Q4_K_M")


def test_eval_problem_says_what_to_do():
    assert eval_problem(100, 100) is None
    assert "quantize without evaluating" in eval_problem(2 << 30, 1 << 30)


def test_run_yields_in_order_and_registers(tiny_model, tmp_path):
    events = list(run_job(str(tiny_model), "Q8_0", tmp_path / "t-Q8_0.gguf"))
    kinds = [type(e) for e in events]
    assert kinds[:3] == [SourceReady, Preflight, Started] and kinds[-2:] == [QuantizeResult, Registered]
    assert TensorProgress in kinds and events[0].downloaded_from is None
    registered = events[-1]
    assert registered.model.path == str(tmp_path / "t-Q8_0.gguf") and registered.model.quant == "Q8_0"
    assert [m.name for m in Library().models()] == [registered.model.name]


def test_a_checkpoints_pre_flight_counts_its_conversion(tmp_path):
    from quantdesk.convert.convert import plan_conversion
    from quantdesk.quantize.job import check_job
    from quantdesk.quantize.source import CONVERT_BYTES_PER_S, CONVERT_RAM_PER_ELEMENT, converted_model_info
    from quantdesk.quantize.quantizer import preflight_download
    from tests.support.checkpoint_factory import write_llama_checkpoint

    folder = tmp_path / "ckpt"
    write_llama_checkpoint(folder, shards=2)
    check = check_job(str(folder), "Q8_0")
    plan = plan_conversion(folder)
    alone = preflight_download(converted_model_info(plan), "Q8_0", None, plan.output_bytes)
    assert check.kind == "checkpoint" and check.ok
    assert check.preflight.seconds == pytest.approx(alone.seconds + plan.checkpoint.weight_bytes / CONVERT_BYTES_PER_S)
    assert check.preflight.ram_needed >= plan.largest_tensor * CONVERT_RAM_PER_ELEMENT
