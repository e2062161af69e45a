from faceparsing import metrics
from faceparsing.inference import evaluation


def test_format_table_marks_absent_classes():
    confusion = metrics.confusion_matrix([0, 1, 1], [0, 1, 0])
    report = evaluation.build_report(confusion, "x.keras", "test", 1, "none")
    table = evaluation.format_table(report)
    assert "absent" in table and "DML-CSR" in table and "this checkpoint" in table
    assert "not comparable with the published rows" in table  # 1 image is not the official split
    report["num_images"] = evaluation.OFFICIAL_TEST_IMAGES
    assert "not comparable" not in evaluation.format_table(report)
