import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from mmvgm.engine.metrics import (binary_metrics, classification_metrics, open_set_auroc,
                                  tpr_at_fpr)


def test_binary_metrics_match_hand_computed_values():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.8, 0.4, 0.7, 0.9, 0.95])
    m = binary_metrics(y, p, threshold=0.5)
    # predictions: 0 0 0 1 | 0 1 1 1 -> 6/8 right
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["balanced_accuracy"] == pytest.approx(0.75)
    assert m["confusion"] == [[3, 1], [1, 3]]
    assert m["auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["per_class"]["fake"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert m["threshold"] == 0.5 and m["n"] == 8
    # at FPR 0 (<1%), only scores above 0.8 are allowed: 0.9, 0.95 -> TPR 0.5
    assert m["tpr_at_fpr_1"] == pytest.approx(0.5)


def test_tpr_at_fpr_single_class_is_undefined():
    assert tpr_at_fpr(np.ones(4), np.random.rand(4), 0.05) is None


def test_multiclass_macro_ovr_skips_absent_classes():
    rng = np.random.default_rng(0)
    y = np.array([0, 0, 1, 1, 2, 2])
    probs = rng.dirichlet(np.ones(4), size=6)  # class 3 never appears
    m = classification_metrics(y, probs, ["a", "b", "c", "d"])
    assert m["auc_classes"] == 3 and m["auc_average"] == "macro-ovr"
    expected = np.mean([roc_auc_score(y == c, probs[:, c]) for c in range(3)])
    assert m["auc"] == pytest.approx(expected)
    assert len(m["confusion"]) == 4 and m["per_class"]["d"]["support"] == 0


def test_perfect_multiclass():
    y = np.array([0, 1, 2, 0, 1, 2])
    probs = np.eye(3)[y] * 0.9 + 0.1 / 3
    m = classification_metrics(y, probs, ["a", "b", "c"])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == m["auc"] == 1.0


def test_empty_and_shape_errors():
    assert classification_metrics([], np.zeros((0, 2)), ["a", "b"])["accuracy"] is None
    with pytest.raises(ValueError):
        classification_metrics([0, 1], np.zeros((2, 3)), ["a", "b"])


def test_open_set_auroc():
    assert open_set_auroc([0.1, 0.2], [0.8, 0.9]) == 1.0
    assert open_set_auroc([], [0.5]) is None
