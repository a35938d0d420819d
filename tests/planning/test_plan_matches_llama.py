"""The planner against a real llama.cpp load of a generated model on this machine."""

from quantdesk.hardware.detect import detect_hardware
from quantdesk.planning.plan import plan_local
from tests.support.llama_probe import measure


def test_predicted_ram_matches_a_real_load(small_model):
    option = plan_local(small_model, detect_hardware(), ctx=1024).options[0]
    assert option.verdict == "cpu_only" or option.gpu_layers > 0
    result = measure(small_model, option.load_args, n_gen=4)
    measured = result["status"]["VmHWM"]
    # bench/plan_accuracy.py holds the full table; a small model is dominated by the process base
    assert abs(option.ram - measured) / measured < 0.15, (option.ram, measured)
    assert result["gen_tps"] > 0
