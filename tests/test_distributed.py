"""torch.distributed on CPU: two gloo processes (one thread each) give the one-process results
(gradient cache, pre-pruned dimensions, trained weights, encoder metrics, cross-encoding,
decoder selection) and the same files;
a rank that dies makes the other raise a clear error, and a rerun resumes from the shards; a
suite of runs is spread over the ranks. The helpers are no-ops in one process."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from tiny import make_model, pretrain

from gradiend import distributed as dist
from gradiend.config import ConfigError
from gradiend.pipeline import pair_configs, parse_pair

WORKER = Path(__file__).with_name("dist_worker.py")
ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory) -> str:
    """A planted-feature masked LM saved to a folder, so that every process loads the same."""
    model, tok = make_model("mlm")
    pretrain(model, tok, "mlm", steps=300)
    path = tmp_path_factory.mktemp("dist") / "tiny-mlm"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    env.update(
        OMP_NUM_THREADS="1",
        HF_HUB_OFFLINE="1",
        CUDA_VISIBLE_DEVICES="",
        PYTHONPATH=os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]),
    )
    env.update(extra)
    return env


def _launch(mode, model, exp: Path, world: int, timeout: float = 150, only_rank0=False, **extra):
    """Run the worker as ``world`` gloo ranks (one process when 1); returns the processes'
    ``(returncode, stderr)`` and rank 0's result (``None`` when it wrote none). ``only_rank0``:
    wait for rank 0, then kill the others."""
    out = exp / "result.json"
    cmd = [sys.executable, str(WORKER), mode, model, str(exp), str(out)]
    if world == 1:
        procs = [subprocess.Popen(cmd, env=_env(**extra), stderr=subprocess.PIPE, text=True)]
    else:
        port = str(_free_port())
        procs = [
            subprocess.Popen(
                cmd,
                env=_env(
                    RANK=str(r),
                    LOCAL_RANK=str(r),
                    WORLD_SIZE=str(world),
                    MASTER_ADDR="127.0.0.1",
                    MASTER_PORT=port,
                    **extra,
                ),
                stderr=subprocess.PIPE,
                text=True,
            )
            for r in range(world)
        ]
    status = []
    try:
        for p in procs[:1] if only_rank0 else procs:
            _, err = p.communicate(timeout=timeout)
            status.append((p.returncode, err))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    return status, (json.loads(out.read_text()) if out.exists() else None)


def _files(root: Path) -> set[str]:
    skip = {"result.json", "timings.json"}
    return {str(p.relative_to(root)) for p in root.rglob("*") if p.is_file() and p.name not in skip}


def _same_gradiend(a: Path, b: Path) -> None:
    """Equal pre-pruned dimensions and trained weights of two model folders."""
    for name in ("mapping_indices.safetensors", "model.safetensors"):
        ta, tb = load_file(str(a / name)), load_file(str(b / name))
        assert ta.keys() == tb.keys()
        for k in ta:
            if ta[k].is_floating_point():
                torch.testing.assert_close(tb[k], ta[k], rtol=1e-5, atol=1e-7)
            else:
                assert torch.equal(ta[k], tb[k]), k


def _assert_ok(status) -> None:
    for rank, (code, err) in enumerate(status):
        assert code == 0, f"rank {rank} failed:\n{err[-3000:]}"


def test_two_gloo_ranks_equal_one_process_and_resume(model_dir, tmp_path):
    """Validation by JVP passes here: rank 0 trains, rank 1 serves its share of the passes."""
    one, two = tmp_path / "one", tmp_path / "two"
    status, single = _launch("run", model_dir, one, 1)
    _assert_ok(status)
    status, split = _launch("run", model_dir, two, 2)
    _assert_ok(status)
    assert split["world"] == 2 and single["world"] == 1
    assert split["distributed"]["validation"] == "shared JVP passes"

    # the same artefacts, written once (rank 1 wrote only gradient shards into the cache)
    assert _files(one) == _files(two)
    cache_one = sorted((one / "he_she" / "cache").rglob("batch_*.safetensors"))
    cache_two = sorted((two / "he_she" / "cache").rglob("batch_*.safetensors"))
    assert len(cache_one) == single["n_batches"] > 4
    assert [p.name for p in cache_one] == [p.name for p in cache_two]  # same pruned key too
    for a, b in zip(cache_one, cache_two):
        ta, tb = load_file(str(a)), load_file(str(b))
        for k in ta:
            torch.testing.assert_close(tb[k].float(), ta[k].float(), rtol=1e-6, atol=0)
    assert single["computed"] == split["computed"] == single["n_batches"]

    # the same GRADIEND (pre-pruned dimensions and weights) for the same seed
    _same_gradiend(one / "he_she" / "model", two / "he_she" / "model")

    # the same encoder metrics and decoder selection
    assert split["encoder"]["correlation"] == pytest.approx(single["encoder"]["correlation"])
    for cls, v in single["encoder"]["mean_by_feature_class"].items():
        assert split["encoder"]["mean_by_feature_class"][cls] == pytest.approx(v, abs=1e-6)
    assert split["encoder_neutral"] == pytest.approx(single["encoder_neutral"], abs=1e-6)
    assert split["cross"] == pytest.approx(single["cross"], abs=1e-6)
    assert split["n_points"] == single["n_points"]
    assert split["decoder"]["learning_rate"] == pytest.approx(single["decoder"]["learning_rate"])
    assert split["decoder"]["feature_factor"] == single["decoder"]["feature_factor"]
    assert split["decoder"]["value"] == pytest.approx(single["decoder"]["value"], rel=1e-9)

    # resume: lost shards are recomputed, the others reused (untouched files)
    kept = {p: p.stat().st_mtime_ns for p in cache_two[1:]}
    cache_two[0].unlink()
    cache_two[3].unlink()
    del kept[cache_two[3]]
    (two / "he_she" / "model" / "training.json").unlink()  # so the GRADIEND is retrained
    status, again = _launch("run", model_dir, two, 2)
    _assert_ok(status)
    assert again["computed"] == 2
    assert all(p.stat().st_mtime_ns == t for p, t in kept.items())
    assert again["decoder"]["learning_rate"] == pytest.approx(single["decoder"]["learning_rate"])


def test_a_dead_rank_stops_the_other_and_a_rerun_resumes(model_dir, tmp_path):
    exp = tmp_path / "die"
    status, result = _launch("die", model_dir, exp, 2, DIST_TIMEOUT="20")
    (code0, err0), (code1, _) = status
    assert code1 == 3 and code0 != 0 and result is None
    assert "DistributedError" in err0 and "use_cache=True resumes" in err0, err0[-3000:]
    written = sorted((exp / "he_she" / "cache").rglob("batch_*.safetensors"))
    odd = [p for p in written if int(p.stem.split("_")[1]) % 2 == 1]
    assert len(odd) == 2  # rank 1 wrote two of its shards before it died
    # the rerun validates with per-row gradients (rows split over the ranks): as one process
    status, again = _launch("run", model_dir, exp, 2, EVAL_BS="4")
    _assert_ok(status)
    assert again["computed"] == again["n_batches"] - len(written)
    assert again["distributed"]["validation"] == "per-row gradients"
    status, single = _launch("run", model_dir, tmp_path / "one", 1, EVAL_BS="4")
    _assert_ok(status)
    _same_gradiend(tmp_path / "one" / "he_she" / "model", exp / "he_she" / "model")
    assert again["encoder"]["correlation"] == pytest.approx(single["encoder"]["correlation"])


def test_without_a_cache_rank_0_gathers_the_batches(model_dir, tmp_path):
    """No gradient files: rank 0 receives the batches (and validation rows) round by round."""
    status, single = _launch("train", model_dir, tmp_path / "one", 1, USE_CACHE="0", EVAL_BS="4")
    _assert_ok(status)
    status, split = _launch("train", model_dir, tmp_path / "two", 2, USE_CACHE="0", EVAL_BS="4")
    _assert_ok(status)
    assert split["distributed"] == {"world_size": 2, "validation": "per-row gradients"}
    assert split["computed"] == single["computed"] == single["n_batches"]
    assert not list(tmp_path.rglob("batch_*.safetensors"))
    _same_gradiend(tmp_path / "one" / "he_she" / "model", tmp_path / "two" / "he_she" / "model")


def test_a_stuck_rank_makes_the_other_raise_after_the_timeout(model_dir, tmp_path):
    t0 = time.perf_counter()
    status, result = _launch("hang", model_dir, tmp_path, 2, DIST_TIMEOUT="6", only_rank0=True)
    ((code0, err0),) = status
    assert code0 != 0 and result is None
    assert "DistributedError" in err0 and "distributed_timeout_s=6 s" in err0, err0[-3000:]
    assert time.perf_counter() - t0 < 100  # not the 600 s the stuck rank sleeps


def test_a_suite_of_runs_is_spread_over_the_ranks(model_dir, tmp_path):
    status, runs = _launch("suite", model_dir, tmp_path, 2)
    _assert_ok(status)
    assert [r["seed"] for r in runs] == [0, 1, 2]
    assert [r["rank"] for r in runs] == [0, 1, 0]  # run i on rank i % 2
    for r in runs:
        assert (Path(r["model_dir"]) / "model.safetensors").is_file()
    assert (tmp_path / "suite_1" / "cache").is_dir()  # rank 1 wrote its own run's files


def test_helpers_are_no_ops_in_one_process():
    assert not dist.is_distributed() and dist.rank() == 0 and dist.world_size() == 1
    assert dist.is_main() and dist.shard([3, 4, 5]) == [3, 4, 5]
    assert dist.all_gather({"a": 1}) == [{"a": 1}] and dist.broadcast(7) == 7
    assert dist.gather_in_order({1: "b", 0: "a"}, 2, "x") == ["a", "b"]
    t = torch.ones(3)
    assert dist.all_reduce_sum_(t) is t and torch.equal(t, torch.ones(3))
    assert dist.on_main(lambda: 5, "x") == 5 and dist.everywhere(lambda: 6, "x") == 6
    assert dist.run_suite([1, 2, 3], lambda x: x * 10) == [10, 20, 30]
    assert not dist.init_from_env()  # no torchrun variables: nothing initialised


def test_pairs_for_the_command_line(tmp_path):
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps({"trainer": {"model": "m", "run_id": "de"}}))
    runs = pair_configs(cfg, ["der,die", "der,das"])
    assert [r.trainer["target_classes"] for r in runs] == [["der", "die"], ["der", "das"]]
    assert [r.trainer["run_id"] for r in runs] == ["de/der_die", "de/der_das"]
    assert parse_pair(" a , b ") == ["a", "b"]
    for bad in ("a", "a,a", "a,b,c", ",b"):
        with pytest.raises(ConfigError, match="--pairs"):
            parse_pair(bad)


def test_train_several_pairs_from_the_command_line(model_dir, tmp_path, capsys):
    from tiny import corpus

    from gradiend import cli

    texts = tmp_path / "texts.txt"
    texts.write_text("\n".join(corpus(900, seed=3)))
    targets = [{"targets": ["he"], "id": "he"}, {"targets": ["she"], "id": "she"}]
    config = {
        "creator": {
            "base_data": str(texts),
            "feature_targets": targets,
            "output_dir": "${config_dir}/data",
            "use_cache": True,
            "min_left_context_words": 3,
        },
        "generate_training_data": {"max_size_per_class": 40},
        "trainer": {"model": model_dir, "run_id": "study"},
        "training_args": {
            "experiment_dir": "${config_dir}/runs",
            "train_batch_size": 4,
            "max_steps": 20,
            "eval_steps": 10,
            "max_seeds": 1,
            "plot_importance": False,
        },
    }
    cfg = tmp_path / "run.json"
    cfg.write_text(json.dumps(config))
    # 20 steps on the tiny model need not converge; this test is about the pairs
    argv = ["train", "-c", str(cfg), "--pairs", "he,she", "she,he", "--no-plot"]
    assert cli.main([*argv, "--allow-unconverged"]) == 0
    out = capsys.readouterr().out
    assert "he/she: correlation" in out and "she/he: correlation" in out
    for run in ("he_she", "she_he"):
        meta = json.loads((tmp_path / "runs" / "study" / run / "model" / "config.json").read_text())
        assert meta["metadata"]["target_classes"] == run.split("_")
    assert cli.main(["train", "-c", str(cfg), "--pairs", "he"]) == 2
    assert "--pairs" in capsys.readouterr().err
