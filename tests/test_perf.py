"""The speed benchmark runs and prints the CSV it promises (its figures are not asserted)."""
import csv
import io

from disentbench.bench import perf, perf_metrics


def test_perf_csv_has_both_cases(capsys):
    assert perf.main(["--csv", "--steps", "1", "--rounds", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["case"] for r in rows] == ["plain", "harness"]
    assert all(r["device"] == "cpu" and float(r["images_per_s"]) > 0 for r in rows)


def test_metric_benchmark_prints_both_parts(capsys):
    perf_metrics.main(["--quick", "--dataset", "tiny", "--metrics", "mig,irs"])
    out = capsys.readouterr().out
    assert "encoder throughput:" in out and "images/s" in out
    assert "(b) synthetic code, no encoder" in out and "(a) conv VAE on tiny" in out
    assert out.count("  mig: discrete_mig=") == 2 and out.count("  irs: IRS=") == 2
