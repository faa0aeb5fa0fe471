"""lens.mock config, flags and MockProcess arguments."""
from __future__ import annotations

import pytest
from click.testing import CliRunner

from lens.errors import ConfigError
from lens.mock import DistSpec, MockConfig, MockProcess
from lens.mock import __all__ as mock_all
from lens.mock.__main__ import main as mock_main
from lens.mock.command import mock_command
from lens.mock.config import parse_cpus, parse_faults
from lens.mock.faults import FAULT_KINDS, FaultPlan, fails, fault_of
from lens.mock.workers import listening_line


def test_public_names():
    assert sorted(mock_all) == ["DistSpec", "MockConfig", "MockProcess", "load_truth",
                                "saturation_rps"]


def test_parse_cpus():
    assert parse_cpus("1") == (1,)
    assert parse_cpus("2,3") == (2, 3)
    assert parse_cpus("0-2,5") == (0, 1, 2, 5)
    with pytest.raises(ConfigError, match="CPU list like"):
        parse_cpus("one")
    with pytest.raises(ConfigError, match="at least one"):
        parse_cpus("3-1")


def test_cpu_of_cycles():
    c = MockConfig(cpus=(4, 5))
    assert [c.cpu_of(k) for k in range(3)] == [4, 5, 4]
    assert MockConfig().cpu_of(0) is None


@pytest.mark.parametrize(("kw", "words"), [
    ({"port": 70000}, "--port must be 0..65535"),
    ({"workers": 0}, "--workers must be >= 1"),
    ({"output_tokens": 0}, "--output-tokens must be >= 1"),
    ({"max_concurrency": -1}, "--max-concurrency must be >= 0"),
    ({"batch_slowdown": -0.1}, "--batch-slowdown must be >= 0"),
    ({"truth_limit": -1}, "--truth-limit must be >= 0"),
    ({"ttft": DistSpec("uniform", 1.0, 5.0)}, "--ttft-spread-ms must be <= --ttft-ms"),
    ({"cpus": (10_000,)}, "names CPUs this process cannot use"),
    ({"api": "bard"}, "--api must be one of openai, anthropic, gemini, cohere, tgi"),
    ({"capture": -1}, "--capture must be >= 0"),
    ({"require_key": ""}, "--require-key must be printable ASCII"),
    ({"require_key": "two words"}, "--require-key must be printable ASCII"),
])
def test_bad_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        MockConfig(**kw).validate()


def test_a_bad_key_is_never_shown():
    with pytest.raises(ConfigError) as e:
        MockConfig(require_key="sk-1 2").validate()
    assert "sk-1" not in str(e.value)
    assert "sk-1" not in repr(MockConfig(require_key="sk-1"))


def test_mock_process_validates_before_starting():
    with pytest.raises(ConfigError, match="--itl-ms must be >= 0"):
        MockProcess(itl_ms=-1)


def test_mock_process_args_mirror_the_flags():
    m = MockProcess(ttft_ms=5, itl_ms=1.5, itl_dist="normal", itl_spread_ms=0.5,
                    output_tokens=7, workers=2, max_concurrency=3, batch_slowdown=0.25,
                    cpu="0", truth_file="/x/t", api="gemini", capture=5, require_key="sk-9")
    args = m.args()
    assert "sk-9" not in " ".join(args)  # the key goes by the environment
    flags = dict(zip(args[::2], args[1::2], strict=True))
    assert flags["--ttft-ms"] == "5" and flags["--itl-ms"] == "1.5"
    assert flags["--itl-dist"] == "normal" and flags["--itl-spread-ms"] == "0.5"
    assert flags["--output-tokens"] == "7" and flags["--workers"] == "2"
    assert flags["--max-concurrency"] == "3" and flags["--batch-slowdown"] == "0.25"
    assert flags["--cpu"] == "0" and flags["--truth-file"] == "/x/t" and flags["--port"] == "0"
    assert flags["--api"] == "gemini" and flags["--capture"] == "5"
    # and the command accepts every one of them
    parsed = mock_command.make_context("mock", list(args)).params
    assert parsed["itl_spread_ms"] == 0.5 and parsed["cpu"] == "0"
    assert parsed["api"] == "gemini" and parsed["capture"] == 5 and parsed["require_key"] is None


def test_the_key_flag_reads_the_environment(monkeypatch):
    monkeypatch.setenv("LENS_MOCK_REQUIRE_KEY", "sk-env")
    assert mock_command.make_context("mock", []).params["require_key"] == "sk-env"
    params = mock_command.make_context("mock", ["--require-key", "sk-flag"]).params
    assert params["require_key"] == "sk-flag"


def test_requests_needs_a_running_mock():
    with pytest.raises(RuntimeError, match="needs the mock running"):
        MockProcess().requests()


def test_truth_before_stop_is_an_error():
    with pytest.raises(RuntimeError, match="call stop"):
        MockProcess().truth()


def test_help_gives_the_formula():
    out = CliRunner().invoke(mock_command, ["--help"]).output
    assert "1 + S*(active-1)" in out
    assert "D = ttft + (T-1)*itl*(1 + S*(C-1))" in out
    for flag in ("--ttft-dist", "--itl-spread-ms", "--max-concurrency", "--truth-file",
                 "--truth-limit", "--workers", "--cpu", "--seed", "--model", "--api",
                 "--capture", "--require-key", "/v1/messages", "/v2/chat", "/generate_stream",
                 ":streamGenerateContent", "/lens/requests"):
        assert flag in out


def test_listening_line():
    assert listening_line("127.0.0.1", 8000, 2) == \
        "lens-fast mock listening on http://127.0.0.1:8000 (2 workers)"
    assert listening_line("::1", 80, 1) == "lens-fast mock listening on http://[::1]:80 (1 worker)"


# faults (--fault KIND=RATE)

def test_parse_faults():
    assert parse_faults(["reset_mid_stream=0.1", " status = 0.05"]) == (
        ("reset_mid_stream", 0.1), ("status", 0.05))
    assert parse_faults([]) == ()
    for bad in ("reset_mid_stream", "reset_mid_stream=", "=0.1", "never_end=often"):
        with pytest.raises(ConfigError, match="--fault must be KIND=RATE, e.g. --fault "
                                              "reset_mid_stream=0.1") as e:
            parse_faults([bad])
        assert repr(bad) in str(e.value) and "kinds: status, reset_before_headers" in str(e.value)


@pytest.mark.parametrize(("kw", "words"), [
    ({"faults": (("resets", 0.1),)}, "--fault resets=0.1: unknown fault kind 'resets'; use one "
                                      "of status, reset_before_headers, reset_mid_stream"),
    ({"faults": (("never_end", 1.5),)}, r"--fault never_end=1.5: the rate must be in 0\.\.1"),
    ({"faults": (("never_end", -0.1),)}, "the rate must be in 0..1"),
    ({"faults": (("never_end", float("nan")),)}, "the rate must be in 0..1"),
    ({"faults": (("status", 0.1), ("status", 0.2))}, "--fault status is given twice"),
    ({"faults": (("status", 0.6), ("never_end", 0.6))}, "add up to 1.2; each request meets at "
                                                         "most one fault"),
    ({"faults": (("status", 0.1),), "fail_rate": 0.1}, "--fail-rate and --fault status=RATE "
                                                       "are the same fault; give one"),
    ({"fault_delay_ms": -1.0}, "--fault-delay-ms must be >= 0"),
])
def test_bad_fault_settings(kw, words):
    with pytest.raises(ConfigError, match=words):
        MockConfig(**kw).validate()


def test_a_bad_fault_flag_is_one_line_and_exit_1(capsys):
    with pytest.raises(SystemExit) as e:
        mock_main(["--port", "0", "--fault", "reset=0.5"])
    assert e.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ConfigError: --fault reset=0.5: unknown fault")


def test_fault_rates_fold_fail_rate_into_status():
    assert MockConfig(fail_rate=0.2, faults=(("never_end", 0.1),)).fault_rates() == {
        "never_end": 0.1, "status": 0.2}
    assert MockConfig(faults=(("never_end", 0.0),)).fault_rates() == {}


def test_mock_process_passes_faults_as_flags():
    m = MockProcess(faults={"invalid_json": 0.25, "never_end": 0.5}, fault_delay_ms=20.0)
    args = m.args()
    assert args[args.index("--fault") + 1] == "invalid_json=0.25"
    parsed = mock_command.make_context("mock", list(args)).params
    assert parsed["faults"] == ("invalid_json=0.25", "never_end=0.5")
    assert parsed["fault_delay_ms"] == 20.0
    assert MockProcess(faults=[("status", 0.1)]).config.faults == (("status", 0.1),)
    with pytest.raises(ConfigError, match="unknown fault kind"):
        MockProcess(faults={"stall": 0.1})
    with pytest.raises(RuntimeError, match="call stop"):
        m.faults()


def test_fault_of_gives_each_kind_its_slice_and_agrees_with_the_plan():
    rates = {"status": 0.1, "reset_mid_stream": 0.2, "never_end": 0.3}
    ids = [str(i) for i in range(5000)]
    kinds = [fault_of(7, r, rates) for r in ids]
    share = {k: kinds.count(k) / len(ids) for k in (*rates, None)}
    assert abs(share["status"] - 0.1) < 0.02 and abs(share["reset_mid_stream"] - 0.2) < 0.02
    assert abs(share["never_end"] - 0.3) < 0.02 and abs(share[None] - 0.4) < 0.02
    # status takes the first slice, so --fail-rate's predictor still names its ids
    assert [k == "status" for k in kinds] == [fails(7, r, 0.1) for r in ids]
    plan = FaultPlan(0.0, 0, 500, None, 7, rates)
    assert [plan.pick(r) for r in ids] == kinds
    assert kinds != [fault_of(8, r, rates) for r in ids]
    assert fault_of(7, "-3", {"status": 1.0}) is None and plan.pick(None) is None
    assert set(FAULT_KINDS) >= set(rates)


def test_fail_first_comes_before_the_rates():
    plan = FaultPlan(0.0, 1, 503, None, 0, {"never_end": 1.0})
    assert [plan.pick("5") for _ in range(3)] == ["status", "never_end", "never_end"]
    assert plan.should_fail("6") and not plan.should_fail("6")
