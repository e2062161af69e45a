from faceparsing.data import layout, release


def test_check_reports_layout_problems(tmp_path):
    (tmp_path / release.MISSPELT_MASK_DIR).mkdir()
    problems = layout.check_dataset(tmp_path, progress=False)
    assert any("CelebA-HQ-to-CelebA-mapping.txt" in problem for problem in problems)
    assert any("rename" in problem for problem in problems)


def test_validate_split_passes_sound_data(tiny_root):
    layout.validate_split(tiny_root, layout.split_ids(tiny_root, "train"))
