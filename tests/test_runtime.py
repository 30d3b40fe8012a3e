import pytest
import torch

from fewlabels.errors import UsageError
from fewlabels.runtime import cpu_bf16_units, cpu_has_fast_bf16, environment, resolve


def test_auto_precision_on_cpu_follows_the_bf16_units():
    rt = resolve("cpu", "auto")
    units = cpu_bf16_units()
    assert set(units) == {"amx", "avx512_bf16"}
    assert all(isinstance(v, bool) for v in units.values())
    assert cpu_has_fast_bf16() == any(units.values())
    assert rt.precision == ("bf16" if any(units.values()) else "fp32")


def test_fp32_runs_without_autocast_and_bf16_with_it():
    x = torch.randn(4, 8)
    w = torch.randn(8, 2)
    with resolve("cpu", "fp32").autocast():
        assert (x @ w).dtype == torch.float32
    with resolve("cpu", "bf16").autocast():
        assert (x @ w).dtype == torch.bfloat16


@pytest.mark.parametrize("device,precision,names", [
    ("tpu", "auto", ["tpu", "cpu"]),
    ("cpu", "fp8", ["fp8", "bf16"]),
    ("cpu", "fp16", ["fp16", "bf16 or fp32"]),
])
def test_requests_that_cannot_be_met_name_the_value_and_the_fix(device, precision, names):
    with pytest.raises(UsageError) as err:
        resolve(device, precision)
    for name in names:
        assert name in str(err.value)


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a CUDA GPU")
def test_cuda_without_a_gpu_says_what_to_use_instead():
    with pytest.raises(UsageError, match="--device cpu"):
        resolve("cuda")


def test_environment_records_what_a_result_depends_on():
    env = environment(resolve("cpu", "fp32"))
    assert env["device"] == "cpu" and env["precision"] == "fp32"
    assert env["threads"] == torch.get_num_threads()
    assert env["cpu_bf16"] == cpu_bf16_units()
    assert env["torch"] == torch.__version__ and "numpy" in env["packages"]


def test_threads_follow_the_flag_then_the_environment_then_the_cpus_allowed(monkeypatch):
    from fewlabels import runtime

    before = torch.get_num_threads()
    try:
        monkeypatch.setenv("FEWLABELS_THREADS", "1")
        assert runtime.set_threads(2) == 2 and torch.get_num_threads() == 2
        assert runtime.set_threads() == 1
        monkeypatch.setenv("FEWLABELS_THREADS", "many")
        with pytest.raises(UsageError, match="FEWLABELS_THREADS='many' is not a whole number"):
            runtime.set_threads()
        monkeypatch.delenv("FEWLABELS_THREADS")
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        assert runtime.set_threads() == runtime.available_cpus()
        with pytest.raises(UsageError, match="threads=0 is not allowed"):
            runtime.set_threads(0)
        monkeypatch.setattr(runtime, "available_cpus", lambda: 2)
        with pytest.raises(UsageError, match=r"^threads=1000 is out of range: 1\.\.2"):
            runtime.set_threads(1000)
        with pytest.raises(UsageError, match=r"^--threads=1000 is out of range"):  # the CLI's
            runtime.set_threads(1000, where="--threads")
        monkeypatch.setenv("FEWLABELS_THREADS", "3")  # the message names the variable
        with pytest.raises(UsageError, match="FEWLABELS_THREADS=3 is out of range"):
            runtime.set_threads()
        monkeypatch.setenv("FEWLABELS_THREADS", "0")
        with pytest.raises(UsageError, match="FEWLABELS_THREADS=0 is not allowed"):
            runtime.set_threads()
    finally:
        torch.set_num_threads(before)


def test_numpy_and_scikit_learn_take_the_threads_torch_takes():
    """Their thread pools (BLAS, OpenMP) are sized to the machine: a one-thread worker of
    --workers ran its PCA and neighbour searches on two threads of a shared CPU."""
    from threadpoolctl import threadpool_info, threadpool_limits

    from fewlabels import runtime

    before = torch.get_num_threads()
    with threadpool_limits(limits=None):  # puts every pool back as it was, at the end
        try:
            runtime.set_threads(1)
            assert {p["num_threads"] for p in threadpool_info()} == {1}
        finally:
            torch.set_num_threads(before)


def test_a_cgroup_quota_caps_the_cpus(tmp_path):
    from fewlabels.runtime import _cgroup_cpus

    (tmp_path / "cpu.max").write_text("150000 100000\n")
    assert _cgroup_cpus(tmp_path) == 1.5
    (tmp_path / "cpu.max").write_text("max 100000\n")
    assert _cgroup_cpus(tmp_path) is None
    assert _cgroup_cpus(tmp_path / "missing") is None
