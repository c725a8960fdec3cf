"""The metric-meaning table (bench/metric_meaning.py): its codes are the oracle's, its notes
reach the page, and (slow) the values it explains are the ones it computes."""
import json
import math

import numpy as np
import pytest

from disentbench.bench import metric_meaning as mm


def test_codes_are_standardised_and_the_rotation_is_the_oracles(shared_dir):
    grid = np.stack(np.unravel_index(np.arange(math.prod(mm.FACTOR_SIZES)), mm.FACTOR_SIZES), 1)
    perfect = mm.codes()["perfect"](grid.astype(float))
    assert np.allclose(perfect.mean(0), 0) and np.allclose(perfect.std(0), 1)
    assert np.allclose(mm.rotation() @ mm.rotation().T, np.eye(5))
    oracle = json.loads((shared_dir / "oracle" / "reference_values.json").read_text())
    stored = oracle["datasets"]["dsprites_like"]["representations"]["rotated"]["R"]
    assert np.allclose(mm.rotation(), np.array(json.loads(stored) if isinstance(stored, str)
                                               else stored), atol=1e-12)


def test_markdown_marks_and_explains_the_noted_keys():
    found = {"perfect": {"sap/SAP_score": 0.24, "dci/completeness": 1.0, "mig/x": float("nan")},
             "noise": {"sap/SAP_score": 0.0, "dci/completeness": 0.0, "mig/x": 3}}
    text = mm.markdown(found, "quick")
    assert "| `sap/SAP_score` ¹ | 0.24 | 0 |" in text and "| `mig/x` | NaN | 3 |" in text
    assert f"- `sap/SAP_score`: {mm.NOTES['sap/SAP_score']}" in text


@pytest.mark.slow
def test_the_table_shows_what_its_notes_explain():
    found = mm.table(size="quick")
    assert found["perfect"]["mig/discrete_mig"] > 0.85 > found["rotated"]["mig/discrete_mig"]
    assert found["noise"]["mig/discrete_mig"] < 0.01
    assert found["perfect + 5 constant"]["modularity-explicitness/modularity_score"] == \
        pytest.approx(found["perfect"]["modularity-explicitness/modularity_score"] / 2)
    explicitness = "modularity-explicitness/explicitness_score_test"
    assert math.isnan(found["perfect + 5 constant"][explicitness])
    assert found["noise"][explicitness] == pytest.approx(0.5, abs=0.05)
    assert found["perfect"]["sap/SAP_score"] < 0.5
