"""Cross-run comparison: numbers checked against values computed by hand.

Three small GRADIENDs over a base-global space of 8 coordinates:

* A — unpruned, global indices 0..7.
* B — an 8-dim model pruned to its top 4 |W_d| → global indices [2, 3, 4, 7].
* C — built pruned with *unsorted* global indices [7, 0, 5, 2].

If any comparison used local positions instead of base-global indices, the numbers differ.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr

from gradiend.evaluator.compare import (
    compute_similarity_matrix,
    load_gradiend,
    topk_sets,
    venn_region_counts,
)
from gradiend.model.gradiend import GradiendModel


def _set_weights(model: GradiendModel, w_d: list[float], w_e: list[float]) -> GradiendModel:
    with torch.no_grad():
        model.W_d[:, 0] = torch.tensor(w_d)
        model.W_e[0] = torch.tensor(w_e)
    return model


def make_models() -> dict[str, GradiendModel]:
    a = _set_weights(GradiendModel(8), [8, -7, 6, 5, -4, 3, 2, 1], [1, 0, 2, 0, 0, 0, 0, 1])
    full_b = _set_weights(
        GradiendModel(8), [0.1, 0.2, 9, -8, 7, 0.3, 0.4, 6], [5, 5, 1, 1, 0, 5, 5, 0]
    )
    b = full_b.prune(topk=4, part="decoder-weight")
    c = _set_weights(
        GradiendModel(4, indices=torch.tensor([7, 0, 5, 2])), [5, 4, 1, 3], [-1, -2, 3, 0]
    )
    return {"A": a, "B": b, "C": c}


def test_fixture_b_is_pruned_to_global_indices():
    b = make_models()["B"]
    assert b.input_dim == 4
    assert b.global_indices().tolist() == [2, 3, 4, 7]


def test_topk_sets_are_base_global():
    sets = topk_sets(make_models(), topk=3)
    assert sets == {"A": {0, 1, 2}, "B": {2, 3, 4}, "C": {7, 0, 2}}


def test_topk_overlap_counts_and_fractions():
    models = make_models()
    counts = compute_similarity_matrix(models, measure="topk_overlap", topk=3, value="intersection")
    expected = [[3, 1, 2], [1, 3, 1], [2, 1, 3]]
    assert counts.to_numpy().tolist() == expected
    assert list(counts.index) == list(counts.columns) == ["A", "B", "C"]
    assert counts.attrs["part"] == "decoder-weight"  # without a fitted decoder: |W_d|
    fracs = compute_similarity_matrix(models, measure="topk_overlap", topk=3)
    np.testing.assert_allclose(fracs.to_numpy(), np.array(expected) / 3)


def test_topk_fraction_is_of_each_models_own_dims():
    # 0.5 → A keeps ceil(0.5·8)=4 {0,1,2,3}, B 2 {2,3}, C 2 {7,0}
    models = make_models()
    assert topk_sets(models, topk=0.5) == {"A": {0, 1, 2, 3}, "B": {2, 3}, "C": {7, 0}}
    fracs = compute_similarity_matrix(models, measure="topk_overlap", topk=0.5)
    np.testing.assert_allclose(
        fracs.to_numpy(), [[1.0, 2 / 2, 1 / 2], [1.0, 1.0, 0.0], [0.5, 0.0, 1.0]]
    )


def test_topk_overlap_needs_topk():
    with pytest.raises(ValueError, match="needs topk"):
        compute_similarity_matrix(make_models(), measure="topk_overlap")


def test_venn_region_counts_three_sets():
    regions = venn_region_counts({"A": {0, 1, 2}, "B": {2, 3, 4}, "C": {7, 0, 2}})
    assert regions == {
        ("A",): 1,
        ("B",): 2,
        ("C",): 1,
        ("A", "B"): 0,
        ("A", "C"): 1,
        ("B", "C"): 0,
        ("A", "B", "C"): 1,
    }


def test_venn_region_counts_cover_every_element_once():
    rng = np.random.default_rng(0)
    sets = {f"s{i}": set(rng.choice(50, 20, replace=False).tolist()) for i in range(5)}
    regions = venn_region_counts(sets)
    assert len(regions) == 2**5 - 1
    assert sum(regions.values()) == len(set().union(*sets.values()))
    for label, s in sets.items():
        assert sum(n for key, n in regions.items() if label in key) == len(s)


def test_cosine_aligns_by_global_index():
    cos = compute_similarity_matrix(make_models(), measure="cosine_signed")
    assert cos.attrs["part"] == "encoder-weight"
    ab = 2 / math.sqrt(6 * 2)  # shared coords 2,3: 2·1 + 0·1; |A|=√6, |B|=√2
    ac = -3 / math.sqrt(6 * 14)  # A·C = 1·(−1) [idx 7] + 1·(−2) [idx 0]; |C|=√14
    bc = 0.0  # shared coords 2 (1·0) and 7 (0·−1)
    expected = [[1.0, ab, ac], [ab, 1.0, bc], [ac, bc, 1.0]]
    np.testing.assert_allclose(cos.to_numpy(), expected, atol=1e-12)
    unsigned = compute_similarity_matrix(make_models(), measure="cosine")
    np.testing.assert_allclose(unsigned.to_numpy(), np.abs(expected), atol=1e-12)


def test_cosine_with_topk_restricts_each_vector():
    # encoder-weight top-1: A keeps idx 2 (w=2), C keeps idx 5 (w=3) → no shared coordinate
    cos = compute_similarity_matrix(make_models(), measure="cosine_signed", topk=1)
    assert cos.loc["A", "C"] == 0.0


def test_spearman_by_hand_and_against_scipy():
    rho = compute_similarity_matrix(make_models(), measure="spearman_signed")
    # A vs B over union 0..7: A = [1,0,2,0,0,0,0,1] ranks [6.5,3,8,3,3,3,3,6.5],
    # B = [0,0,1,1,0,0,0,0] ranks [3.5,3.5,7.5,7.5,3.5,3.5,3.5,3.5]; centred (mean 4.5):
    # Σ dA·dB = 8, Σ dA² = 31.5, Σ dB² = 24 → ρ = 8/√756
    assert rho.loc["A", "B"] == pytest.approx(8 / math.sqrt(756))
    # B vs C over union [0, 2, 3, 4, 5, 7], missing = 0
    vb, vc = [0, 1, 1, 0, 0, 0], [-2, 0, 0, 0, 3, -1]
    assert rho.loc["B", "C"] == pytest.approx(spearmanr(vb, vc).statistic)
    unsigned = compute_similarity_matrix(make_models(), measure="spearman")
    assert unsigned.loc["B", "C"] == pytest.approx(abs(rho.loc["B", "C"]))


def test_mass_overlap_by_hand():
    mass = compute_similarity_matrix(make_models(), measure="mass_overlap")
    # A total |W_d| 36, on B's {2,3,4,7}: 6+5+4+1 = 16; B fully shared
    assert mass.loc["A", "B"] == pytest.approx(0.5 * (16 / 36 + 1))
    # A on C's {7,0,5,2}: 1+8+3+6 = 18; C fully shared
    assert mass.loc["A", "C"] == pytest.approx(0.75)
    # shared {2,7}: B 9+6 of 30, C 3+5 of 13
    assert mass.loc["B", "C"] == pytest.approx(0.5 * (15 / 30 + 8 / 13))
    np.testing.assert_allclose(np.diag(mass.to_numpy()), 1.0)


def test_seed_groups_aggregate_member_pairs():
    m = make_models()
    grouped = compute_similarity_matrix(
        {"AB": [m["A"], m["B"]], "C": m["C"]}, measure="cosine_signed"
    )
    assert grouped.loc["AB", "AB"] == pytest.approx(2 / math.sqrt(12))
    assert grouped.loc["AB", "C"] == pytest.approx((-3 / math.sqrt(84) + 0.0) / 2)
    worst = compute_similarity_matrix(
        {"AB": [m["A"], m["B"]], "C": m["C"]}, measure="cosine_signed", aggregate="min"
    )
    assert worst.loc["AB", "C"] == pytest.approx(-3 / math.sqrt(84))


def test_models_from_run_folders_and_wrappers(tmp_path):
    m = make_models()
    m["A"].save_pretrained(tmp_path / "runA" / "model")  # run folder layout
    m["B"].save_pretrained(tmp_path / "modelB")  # model folder itself
    inputs = {
        "A": tmp_path / "runA",
        "B": str(tmp_path / "modelB"),
        "C": SimpleNamespace(gradiend=m["C"]),
    }
    from_paths = compute_similarity_matrix(
        inputs, measure="topk_overlap", topk=3, value="intersection"
    )
    in_memory = compute_similarity_matrix(m, measure="topk_overlap", topk=3, value="intersection")
    assert from_paths.equals(in_memory)
    loaded_b = load_gradiend(tmp_path / "modelB")
    assert loaded_b.global_indices().tolist() == [2, 3, 4, 7]


def test_sequence_of_paths_is_labelled_by_folder(tmp_path):
    m = make_models()
    for name in ("A", "C"):
        m[name].save_pretrained(tmp_path / f"run{name}")
    frame = compute_similarity_matrix(
        [tmp_path / "runA", tmp_path / "runC"], measure="topk_overlap", topk=3
    )
    assert list(frame.index) == ["runA", "runC"]
    assert frame.loc["runA", "runC"] == pytest.approx(2 / 3)


def test_rejects_unknown_inputs():
    with pytest.raises(TypeError, match="GradiendModel"):
        load_gradiend(42)
    with pytest.raises(ValueError, match="unknown measure"):
        compute_similarity_matrix(make_models(), measure="jaccard")
