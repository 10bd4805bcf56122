import json
from pathlib import Path

import numpy as np
import pytest

from model.evaluation import format_table, main, run_evaluation
from model.params import Params
from model.tuning import Space

KEYS = {"model", "ndcg", "recall", "precision", "hit_rate", "mrr", "coverage", "train_seconds"}
TINY_SPACE = Space(
    value_power=(1.0,),
    recency_tau=(5.0,),
    max_history=(50,),
    sequence_weight=(0.0, 1.0),
    sequence_tau=(5.0,),
    sequence_window=(10,),
    sequence_backward=(0.5,),
    l2_steps=0,
)
TINY_BASE = Params(l2=10.0)


@pytest.fixture(scope="module")
def movielens_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A MovieLens-format folder: two taste clusters, ratings over time."""
    rng = np.random.default_rng(11)
    folder = tmp_path_factory.mktemp("ml")
    lines = ["userId,movieId,rating,timestamp"]
    for user in range(1, 41):
        base = 1 if user <= 20 else 101
        for t, movie in enumerate(rng.choice(25, size=15, replace=False).tolist()):
            rating = float(rng.choice([2.0, 3.5, 4.0, 5.0]))
            lines.append(f"{user},{base + movie},{rating},{1_000_000 + 60 * t}")
    (folder / "ratings.csv").write_text("\n".join(lines) + "\n")
    (folder / "movies.csv").write_text("movieId,title,genres\n1,A (1995),Comedy|Drama\n")
    return folder


@pytest.mark.parametrize("variant", ["all", "pos35"])
def test_rows_for_all_three_models(movielens_dir: Path, variant: str) -> None:
    rows = run_evaluation(
        movielens_dir, variant, space=TINY_SPACE, base=TINY_BASE, log=lambda _: None
    )
    assert [row["model"] for row in rows] == ["popularity", "ease", "service"]
    for row in rows:
        assert set(row) == KEYS
        assert all(0.0 <= row[k] <= 1.0 for k in KEYS - {"model", "train_seconds"})
    service = rows[2]
    # Two disjoint taste clusters: a personal model must beat one global list.
    assert service["ndcg"] > rows[0]["ndcg"]


def test_table_and_cli(
    movielens_dir: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import model.evaluation as evaluation

    real = evaluation.run_evaluation
    monkeypatch.setattr(
        evaluation,
        "run_evaluation",
        lambda data, variant: real(
            data, variant, space=TINY_SPACE, base=TINY_BASE, log=lambda _: None
        ),
    )
    out = tmp_path / "rows.json"
    assert main(["--data", str(movielens_dir), "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    rows = json.loads(out.read_text())
    assert printed.strip() == format_table(rows)
    assert printed.splitlines()[0].startswith("| model | NDCG@10")
    assert len(printed.strip().splitlines()) == 5
