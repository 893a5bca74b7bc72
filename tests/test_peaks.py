"""The peaks MFU divides by: one device's datasheet figure, what a row's per-core rate runs on."""

import pytest

from coatbench.measure.machine import TPU_PEAKS, peak_tflops, xla_device_name
from coatbench.results import Compute


@pytest.mark.parametrize(
    ("generation", "chip", "core", "device"),
    [
        ("v2", 45.0, 22.5, 22.5),  # an XLA device is a core
        ("v3", 123.0, 61.5, 61.5),
        ("v4", 275.0, 137.5, 275.0),  # megacore: the two cores are one device
        ("v5e", 197.0, 197.0, 197.0),  # one core a chip
        ("v5p", 459.0, 229.5, 459.0),
        ("v6e", 918.0, 918.0, 918.0),
    ],
)
def test_tpu_peaks_per_chip_core_and_device(generation, chip, core, device):
    peak = TPU_PEAKS[generation]
    assert (peak.per_chip, peak.per_core, peak.per_device) == (chip, core, device)
    assert peak_tflops(f"XLA:TPU {generation}", "bf16") == device
    assert peak_tflops(f"XLA:TPU {generation}", "fp32") is None  # no datasheet figure: no MFU


def test_tpu_names_follow_the_accelerator_type():
    tpu = {"pjrt_device": "TPU", "tpu_version": 5}
    assert xla_device_name({**tpu, "tpu_type": "v5litepod"}) == "XLA:TPU v5e"
    assert xla_device_name({**tpu, "tpu_type": "v5p"}) == "XLA:TPU v5p"
    assert xla_device_name({**tpu, "tpu_type": None}) == "XLA:TPU v5"  # ambiguous: no peak rather than a wrong one
    assert peak_tflops("XLA:TPU v5", "bf16") is None
    assert xla_device_name({"pjrt_device": "CPU"}) == "XLA:CPU" and peak_tflops("XLA:CPU", "bf16") is None


def test_gpu_peaks_and_the_row_names_the_peak_it_divides_by():
    assert peak_tflops("NVIDIA H100 80GB HBM3", "bf16") == 989.4
    assert peak_tflops("NVIDIA H100 PCIe", "bf16") == 756.0
    compute = Compute.of(1000.0, 2, 10**9, 989.4, "bf16", "NVIDIA H100 80GB HBM3")
    assert compute.peak_tflops == pytest.approx(2 * 989.4) and compute.mfu == pytest.approx(2.0 / (2 * 989.4))
    assert compute.peak_source == "datasheet dense bf16, 989.4 TFLOP/s per device, NVIDIA H100 80GB HBM3"
