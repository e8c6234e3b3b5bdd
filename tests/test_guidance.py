from ecg_app.clinical.guidance import load_guidance
from ecg_app.labels import CLASSES, DISPLAY_NAMES


def test_every_class_has_complete_guidance():
    book = load_guidance()
    expected_risk = {"MI": "HIGH", "HMI": "HIGH", "AHB": "MEDIUM", "Normal": "LOW", "NonECG": "NONE"}
    for label in CLASSES:
        g = book.for_label(label)
        assert g.risk_level == expected_risk[label]
        assert len(g.interpretation) > 80 and g.monitoring
        if label != "NonECG":
            assert len(g.suggested_tests) >= 3 and len(g.lifestyle) >= 3
    assert book.for_label("MI").is_high_risk and "emergency" in book.for_label("MI").emergency.lower()
    assert "not a substitute for professional diagnosis" in book.disclaimer
    assert "educational and research use" in book.disclaimer


def test_display_names_in_fixed_order():
    assert list(CLASSES) == ["MI", "HMI", "AHB", "Normal", "NonECG"]
    assert [DISPLAY_NAMES[c] for c in CLASSES] == [
        "Myocardial Infarction",
        "History of MI",
        "Abnormal Heartbeat",
        "Normal ECG",
        "Non-ECG Image",
    ]
