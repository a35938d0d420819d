import json

import pytest

from quantdesk.base.errors import QuantDeskError
from quantdesk.hardware.detect import detect_amd, detect_hardware, resolve_hardware
from quantdesk.hardware.machine import hardware_from_json, load_hardware_spec, preset_names

REQUIRED = {"nvidia-8gb", "nvidia-12gb", "nvidia-16gb", "nvidia-24gb", "nvidia-2x24gb", "cpu-8gb-laptop",
            "cpu-16gb-laptop", "apple-16gb", "apple-36gb"}


def test_presets_cover_the_promised_machines():
    assert REQUIRED <= set(preset_names())
    for name in preset_names():
        hw = load_hardware_spec(name)
        assert hw.source == f"preset:{name}"
        assert hw.ram_available <= hw.ram_total
        for gpu in hw.gpus:
            assert gpu.vram_free <= gpu.vram_total
    assert len(load_hardware_spec("nvidia-2x24gb").gpus) == 2
    apple = load_hardware_spec("apple-16gb")
    assert apple.gpus[0].unified_memory and apple.gpus[0].vram_total < apple.ram_total


def test_detection_on_this_machine_is_a_normal_case():
    hw = detect_hardware()
    assert hw.ram_total > 0 and hw.cpu.threads >= hw.cpu.cores >= 1
    assert hw.disk_free > 0
    if not hw.gpus:
        assert any("no supported GPU" in n for n in hw.notes)


def test_json_round_trip(tmp_path):
    hw = detect_hardware()
    path = tmp_path / "hw.json"
    path.write_text(json.dumps(hw.to_json()))
    again = load_hardware_spec(str(path))
    assert again.to_json() | {"source": None} == hw.to_json() | {"source": None}


def test_env_var_selects_simulated_hardware(monkeypatch):
    monkeypatch.setenv("QUANTDESK_HARDWARE", "nvidia-12gb")
    assert resolve_hardware().gpus[0].vram_total == 12 * 2**30


def test_bad_hardware_files_name_the_problem(tmp_path):
    with pytest.raises(QuantDeskError, match="presets:"):
        load_hardware_spec("no-such-preset")
    with pytest.raises(QuantDeskError, match="ram_total"):
        hardware_from_json({"gpus": [], "ram_total": -5})
    with pytest.raises(QuantDeskError, match="vendor"):
        hardware_from_json({"gpus": [{"vendor": "acme", "vram_total": 1}], "ram_total": 1})
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(QuantDeskError, match="cannot read"):
        load_hardware_spec(str(broken))


def test_amd_from_sysfs(tmp_path):
    dev = tmp_path / "card0" / "device"
    dev.mkdir(parents=True)
    (dev / "vendor").write_text("0x1002\n")
    (dev / "mem_info_vram_total").write_text(str(16 * 2**30))
    (dev / "mem_info_vram_used").write_text(str(2**30))
    (dev / "product_name").write_text("Radeon RX 7800 XT")
    (tmp_path / "card1" / "device").mkdir(parents=True)  # an Intel iGPU without VRAM files
    (tmp_path / "card1" / "device" / "vendor").write_text("0x8086")
    gpus = detect_amd(tmp_path)
    assert len(gpus) == 1
    assert gpus[0].vram_free == 15 * 2**30 and gpus[0].name == "Radeon RX 7800 XT"
    assert gpus[0].source.startswith("sysfs:")
