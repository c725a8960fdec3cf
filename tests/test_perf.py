"""The speed benchmark runs and prints the CSV it promises (its figures are not asserted)."""
import csv
import io

from bench import perf


def test_perf_csv_has_both_cases(capsys):
    assert perf.main(["--csv", "--steps", "1", "--rounds", "1"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["case"] for r in rows] == ["plain", "harness"]
    assert all(r["device"] == "cpu" and float(r["images_per_s"]) > 0 for r in rows)
