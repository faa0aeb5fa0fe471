"""lens.run: the library entry point."""
import json

import lens


def test_run_returns_the_summary_and_writes_it(mock_endpoint, tmp_path):
    plan = lens.RunPlan(url=mock_endpoint.url, cores=1, concurrency=2, requests=10,
                        max_tokens=4)
    summary = lens.run(plan, output=str(tmp_path))
    res = summary["scenarios"][0]["results"][0]
    assert res["counts"]["ok"] == 10
    assert json.loads((tmp_path / "summary.json").read_text())["scenarios"][0]["results"][0][
        "counts"]["ok"] == 10
    assert lens.run(plan)["scenarios"][0]["results"][0]["counts"]["sent"] == 10
