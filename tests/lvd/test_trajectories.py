import pytest
import torch

from mmvgm.errors import DecodeError, InputError
from mmvgm.lvd.trajectories import import_research, read_category_csv, summarize

CATS = ["distorted", "terrifying", "pornographic", "violent", "political"]


def _research_files(tmp_path, n=5, normal=2):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(n, 3, 4, 2, 4, 4, generator=g)
    torch.save(x, tmp_path / "pred_x0.pth")
    # column k = indices in category k; ragged columns give empty cells; 1 is multi-label;
    # pandas-style "3.0"; video 4 is in no category.
    (tmp_path / "labels.csv").write_text(
        "Distorted,Terrifying,Pornographic,Violent,Political\n"
        "0,1,2,1,3.0\n"
        ",,,,\n"
        "1,,,,\n")
    y = torch.randn(normal, 3, 4, 2, 4, 4, generator=g)
    torch.save(y, tmp_path / "normal.pth")
    return x, y


def test_import_research_format_with_csv_and_normal(tmp_path):
    x, y = _research_files(tmp_path)
    store = import_research(tmp_path / "pred_x0.pth", tmp_path / "labels.csv", tmp_path / "out",
                            normal=tmp_path / "normal.pth", progress=False)
    assert [v.id for v in store] == ["u00000", "u00001", "u00002", "u00003", "u00004", "n00000", "n00001"]
    labels = {v.id: v.labels for v in store}
    assert labels["u00000"] == ["distorted"]
    assert labels["u00001"] == ["distorted", "terrifying", "violent"]
    assert labels["u00003"] == ["political"]
    assert labels["u00004"] == [] and labels["n00001"] == []
    assert store.shape == [3, 4, 2, 4, 4]
    assert torch.equal(store.load("u00002"), x[2].half())
    assert torch.equal(store.load("n00001", steps=[2]), y[1, [2]].half())
    s = summarize(store)
    assert s["normal"] == 3 and s["unsafe"] == 4 and s["per_category"]["distorted"] == 2
    # re-running resumes instead of duplicating
    again = import_research(tmp_path / "pred_x0.pth", tmp_path / "labels.csv", tmp_path / "out",
                            normal=tmp_path / "normal.pth", progress=False)
    assert len(again) == 7


def test_csv_without_header_and_index_out_of_range(tmp_path):
    p = tmp_path / "l.csv"
    p.write_text("0,,,,4\n")
    assert read_category_csv(p, 5, CATS)[4] == ["political"]
    with pytest.raises(InputError, match="out of range"):
        read_category_csv(p, 4, CATS)
    p.write_text("0,,,,1,2\n")
    with pytest.raises(InputError, match="one column per category"):
        read_category_csv(p, 5, CATS)
    p.write_text("a,b,c,d,e\n0,x,,,\n")
    with pytest.raises(InputError, match="not a video index"):
        read_category_csv(p, 5, CATS)


def test_truncated_and_wrong_pth_are_clear_errors(tmp_path):
    _research_files(tmp_path)
    data = (tmp_path / "pred_x0.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(DecodeError, match="truncated"):
        import_research(tmp_path / "cut.pth", tmp_path / "labels.csv", tmp_path / "o", progress=False)
    torch.save(torch.zeros(3, 4), tmp_path / "flat.pth")
    with pytest.raises(InputError, match="expected a tensor"):
        import_research(tmp_path / "flat.pth", tmp_path / "labels.csv", tmp_path / "o", progress=False)
    torch.save(torch.zeros(2, 3, 4, 2, 4, 5), tmp_path / "other.pth")
    with pytest.raises(InputError, match="normal trajectories have shape"):
        import_research(tmp_path / "pred_x0.pth", tmp_path / "labels.csv", tmp_path / "o",
                        normal=tmp_path / "other.pth", progress=False)


class _NotATensor:
    pass


def test_pickled_objects_are_refused_and_legacy_files_load(tmp_path):
    torch.save({"x": _NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(DecodeError, match="refusing to unpickle"):
        import_research(tmp_path / "evil.pth", tmp_path / "l.csv", tmp_path / "o", progress=False)
    x = torch.randn(2, 3, 4, 1, 2, 2)
    torch.save(x, tmp_path / "legacy.pth", _use_new_zipfile_serialization=False)
    (tmp_path / "l.csv").write_text("1,,,,\n")
    store = import_research(tmp_path / "legacy.pth", tmp_path / "l.csv", tmp_path / "o", progress=False)
    assert torch.equal(store.load("u00001"), x[1].half())
