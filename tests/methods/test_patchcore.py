"""methods.patchcore: coreset selection, the bank's neighbour table, patch and image scores, fitting."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch
from scipy.spatial.distance import cdist
from sklearn.random_projection import GaussianRandomProjection

from inference.engine import EngineConfig, InferenceEngine
from methods import patchcore
from methods.patchcore import PatchCoreConfig, PatchCoreHead, PatchCoreModel, greedy_coreset, support_table
from methods.registry import load_trained_model

TINY = PatchCoreConfig(backbone="efficientnet_lite0", layers=("blocks.2", "blocks.4"), coreset=0.25, imagesize=64,
                       resize=64, mean=(0.5,) * 3, std=(0.5,) * 3)


def literal_k_centre(points: np.ndarray, count: int, start: int) -> list[int]:
    """Greedy k-centre as written in textbooks: each next point is the one whose distance to its nearest chosen
    point is largest (plain loops, float64)."""
    chosen = [start]
    while len(chosen) < count:
        best, best_distance = -1, -1.0
        for i in range(len(points)):
            distance = min(float(np.linalg.norm(points[i] - points[j])) for j in chosen)
            if distance > best_distance:
                best, best_distance = i, distance
        chosen.append(best)
    return chosen


def random_rows(count: int, dim: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).normal(size=(count, dim)).astype(np.float32))


def test_greedy_coreset_equals_the_literal_k_centre_without_projection():
    features = random_rows(60, 6, seed=1)
    chosen = greedy_coreset(features, 12, projection_dim=0, seed=3)
    assert chosen.tolist() == literal_k_centre(features.double().numpy(), 12, int(chosen[0]))
    assert len(set(chosen.tolist())) == 12


def test_greedy_coreset_equals_the_literal_k_centre_on_the_seeded_projection():
    features = random_rows(50, 24, seed=2)
    chosen = greedy_coreset(features, 10, projection_dim=5, seed=7)
    projected = GaussianRandomProjection(n_components=5, random_state=7).fit_transform(features.numpy())
    assert chosen.tolist() == literal_k_centre(projected.astype(np.float64), 10, int(chosen[0]))
    # a projection to more dimensions than the rows have is no projection
    wide = greedy_coreset(features, 10, projection_dim=64, seed=7)
    assert wide.tolist() == literal_k_centre(features.double().numpy(), 10, int(wide[0]))


def test_greedy_coreset_keeps_every_row_when_asked_for_as_many_or_more():
    features = random_rows(9, 4, seed=0)
    assert greedy_coreset(features, 9, 0, seed=0).tolist() == list(range(9))
    assert greedy_coreset(features, 20, 2, seed=0).tolist() == list(range(9))


def test_greedy_coreset_same_seed_same_indices_other_seed_other_start():
    features = random_rows(80, 8, seed=4)
    first = greedy_coreset(features, 15, projection_dim=4, seed=5)
    assert torch.equal(first, greedy_coreset(features, 15, projection_dim=4, seed=5))
    starts = {int(greedy_coreset(features, 2, projection_dim=0, seed=seed)[0]) for seed in range(8)}
    assert len(starts) > 1


@pytest.mark.parametrize("chunk", [patchcore.DISTANCE_CHUNK, 7])
def test_support_table_equals_brute_force_neighbours_itself_first(monkeypatch, chunk):
    monkeypatch.setattr(patchcore, "DISTANCE_CHUNK", chunk)
    bank = random_rows(30, 8, seed=6)
    table, widest = support_table(bank, 4)
    distances = cdist(bank.double().numpy(), bank.double().numpy())
    assert table.tolist() == np.argsort(distances, axis=1)[:, :4].tolist()
    assert table[:, 0].tolist() == list(range(30))
    np.fill_diagonal(distances, np.inf)
    assert widest == pytest.approx(distances.min(axis=1).max(), rel=1e-5)


def test_support_table_of_a_small_bank_has_at_most_the_bank():
    bank = torch.tensor([[0.0, 0.0], [3.0, 0.0], [0.0, 1.0]])
    table, widest = support_table(bank, 9)
    assert table.tolist() == [[0, 2, 1], [1, 0, 2], [2, 0, 1]]
    assert widest == pytest.approx(3.0)  # point 1's nearest other one is point 0
    single, widest_single = support_table(bank[:1], 9)
    assert single.tolist() == [[0]] and widest_single == 0.0


def hand_head(bank: torch.Tensor, neighbours: int, scale: float) -> PatchCoreHead:
    head = PatchCoreHead(PatchCoreConfig(neighbours=neighbours))
    head.memory_bank = bank
    head.support = support_table(bank, neighbours)[0]
    head.scale = torch.tensor(scale)
    return head


def test_patch_and_image_scores_equal_the_papers_equation_7_by_hand():
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [5.0, 4.0], [4.0, 6.0]])
    rows = torch.tensor([[0.2, 0.1], [4.6, 4.5], [2.0, 2.0], [10.0, -3.0]])
    scale = 1.5
    patch, image = hand_head(bank, 3, scale).score_rows(rows)
    b, x = bank.double().numpy(), rows.double().numpy()
    expected_patch, expected_image = [], []
    for row in x:
        d = np.linalg.norm(b - row, axis=1)
        star = int(np.argmin(d))
        neighbourhood = np.argsort(np.linalg.norm(b - b[star], axis=1))[:3]  # N_b(m*), m* itself included
        s_star = d[star]
        s = (1 - np.exp(d[star]) / np.exp(d[neighbourhood]).sum()) * s_star
        expected_patch.append(s_star / (s_star + scale))
        expected_image.append(s / (s + scale))
    assert patch.tolist() == pytest.approx(expected_patch, abs=1e-6)
    assert image.tolist() == pytest.approx(expected_image, abs=1e-6)
    assert bool((image <= patch).all())  # the weight lies in [0, 1]


@pytest.mark.parametrize("neighbours,bank_size", [(1, 6), (9, 1)])
def test_without_a_neighbourhood_the_image_score_is_the_patch_score(neighbours, bank_size):
    """Eq. 7 over N_b(m*) = {m*} is 0 for every patch; then there is nothing to reweight (anomalib's rule)."""
    bank = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 2.0], [4.0, 4.0], [5.0, 4.0], [4.0, 6.0]])[:bank_size]
    rows = torch.tensor([[0.2, 0.1], [4.6, 4.5], [10.0, -3.0]])
    patch, image = hand_head(bank, neighbours, 1.5).score_rows(rows)
    nearest = torch.cdist(rows.double(), bank.double()).min(dim=1).values
    assert patch.tolist() == pytest.approx((nearest / (nearest + 1.5)).tolist(), abs=1e-6)
    assert torch.equal(image, patch) and float(image.min()) > 0


def test_chunked_head_equals_one_block():
    generator = torch.Generator().manual_seed(0)
    maps = [torch.randn(2, 4, 6, 5, generator=generator), torch.randn(2, 8, 3, 3, generator=generator)]
    bank = torch.randn(40, 12, generator=generator)
    whole = hand_head(bank, 4, 2.0)
    whole.chunk = None
    chunked = whole.shared_copy(chunk=7)  # 60 rows in 9 blocks
    expected, got = whole(maps), chunked(maps)
    assert expected[0].shape == (2, 6, 5)
    for a, b in zip(got, expected):
        assert torch.allclose(a, b, atol=1e-6, rtol=0)


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return torch.randn(3, 3, 64, 64, generator=torch.Generator().manual_seed(1))


def test_fitting_twice_with_the_same_seed_gives_the_same_memory_bank_same_seed_same_machine_same_numbers(images):
    first, second = PatchCoreModel.build(TINY), PatchCoreModel.build(TINY)
    facts = first.fit([images[:2], images[2:]], seed=4)
    second.fit([images[:2], images[2:]], seed=4)
    assert facts == {"patches": 3 * 8 * 8, "bank": 48, "dim": 40 + 112}
    assert first.head.memory_bank.shape == (48, 152) and first.head.support.shape == (48, 9)
    for name, value in first.weights().items():
        assert torch.equal(value, second.weights()[name]), name
    second.fit([images[:2], images[2:]], seed=5)
    assert not torch.equal(second.head.memory_bank, first.head.memory_bank)


def test_scores_lie_in_zero_one(fitted_methods, images):
    net, _ = load_trained_model(fitted_methods.class_dir("patchcore"))
    for batch in (images, images * 50, torch.full((1, 3, 64, 96), -30.0), torch.zeros(1, 3, 32, 64)):
        patch, image = net.score_grids(batch)
        assert float(patch.min()) >= 0 and float(patch.max()) < 1
        assert float(image.min()) >= 0 and float(image.max()) < 1
        assert bool((image <= patch + 1e-7).all())


def paste_bright_square(frame: np.ndarray, y: int, x: int) -> np.ndarray:
    """The frame with a white 14 x 14 square at (y, x)."""
    out = frame.copy()
    out[y:y + 14, x:x + 14] = 255
    return out


@pytest.mark.parametrize("method", ["patchcore", "padim"])
def test_a_bright_square_scores_higher_than_every_clean_image(fitted_methods, method):
    engine = InferenceEngine.from_config(EngineConfig(str(fitted_methods.class_dir(method)), device="cpu",
                                                      backend="torch"))
    clean = [cv2.imread(str(p)) for p in sorted((fitted_methods.data_path / "toy" / "test" / "good").glob("*.png"))]
    defects = [paste_bright_square(frame, 10 + 12 * i, 40 - 12 * i) for i, frame in enumerate(clean)]
    clean_scores, defect_scores = engine.image_scores(clean), engine.image_scores(defects)
    assert min(defect_scores) > max(clean_scores)
    for i, result in enumerate(engine.predict(defects)):  # and the map peaks on (or right beside) the square
        y, x = np.unravel_index(np.argmax(result.anomaly_map), result.anomaly_map.shape)
        top, left = 10 + 12 * i, 40 - 12 * i
        assert top - 4 <= y < top + 14 + 4 and left - 4 <= x < left + 14 + 4, (i, y, x)
