import pytest
from matplotlib.image import imread

from slimctr import report
from slimctr.report import plot_pareto
from slimctr.search import pareto_front

CANDIDATES = [
    {"name": "step0-float32", "storage": "float32", "bytes": 4000, "valid_auc": 0.75},
    {"name": "step0-int8", "storage": "int8", "bytes": 1000, "valid_auc": 0.749},
    {"name": "step1-int8", "storage": "int8", "bytes": 500, "valid_auc": 0.745},
    {"name": "student-int8", "storage": "int8", "bytes": 300, "valid_auc": 0.747},
    {"name": "allocated-int8", "storage": "int8", "bytes": 200, "valid_auc": 0.70},
]


@pytest.fixture
def drawn(monkeypatch, tmp_path):
    """The Pareto plot's lines as drawn: label -> list of (bytes, auc)."""
    lines = {}
    save = report._save_auc_by_bytes

    def spy(fig, ax, title, path, outside_legend=False):
        for line in ax.get_lines():
            points = list(zip(line.get_xdata(), line.get_ydata(), strict=True))
            lines[line.get_label()] = points
        return save(fig, ax, title, path, outside_legend)

    monkeypatch.setattr(report, "_save_auc_by_bytes", spy)
    path = plot_pareto(CANDIDATES, "student-int8", tmp_path / "pareto.png", 0.74)
    return lines, path


def test_every_candidate_is_drawn_once_in_its_group(drawn):
    lines, _ = drawn
    points = [p for label, ps in lines.items() if ", " in label for p in ps]
    assert sorted(points) == sorted((c["bytes"], c["valid_auc"]) for c in CANDIDATES)
    assert lines["student, int8"] == [(300, 0.747)]
    assert lines["allocated, int8"] == [(200, 0.70)]
    assert sorted(lines["pruning step, int8"]) == [(500, 0.745), (1000, 0.749)]


def test_the_front_the_floor_and_the_choice_are_drawn(drawn):
    lines, path = drawn
    front = [(p["bytes"], p["valid_auc"]) for p in pareto_front(CANDIDATES)]
    assert lines["Pareto front"] == front
    # the allocated point is the smallest, so it opens the front; the
    # int8 step 1 is dominated by the student
    assert (500, 0.745) not in front and front[0] == (200, 0.70)
    assert lines["chosen: student-int8"] == [(300, 0.747)]
    assert {y for _, y in lines["budget floor"]} == {0.74}
    image = imread(path)
    assert image.shape[0] >= 400 and image.shape[1] >= 800
    assert image[..., :3].std() > 0.05  # not a blank canvas
