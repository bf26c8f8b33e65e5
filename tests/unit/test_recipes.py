"""Every model's real NeMo recipe, built on the CPU with the matrix's overrides: the resolved configuration has the
matrix's values, and its parts (model config, data module, optimizer, strategy, callbacks) instantiate."""

import functools

import fiddle
import pytest

from qwen_acceptance import models
from qwen_acceptance.data import cache, sources
from qwen_acceptance.errors import AcceptanceError
from qwen_acceptance.run import recipes

pytestmark = pytest.mark.slow  # imports NeMo (15-20 s on 2 cores)
MATRIX = models.load_matrix()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    corpus = sources.resolve_input(sources.BUNDLED_CORPUS)
    return cache.ensure_dataset(corpus, sources.BUNDLED_QWEN3, tmp_path_factory.mktemp("cache"), progress=False).prefix


@pytest.fixture(scope="module")
def paths(dataset, tmp_path_factory):
    return recipes.RunPaths(dataset, sources.bundled_qwen3_dir(), tmp_path_factory.mktemp("run"))


@pytest.mark.parametrize("name", list(MATRIX))
def test_recipe_carries_the_matrix(name, paths):
    spec = MATRIX[name]
    nodes = spec.gpus // 8 if spec.gpus > 8 else 1
    recipe = recipes.build(spec, paths, nodes=nodes, te=False)
    got = recipes.resolved(recipe)
    lay = spec.layout
    assert got["trainer"]["num_nodes"] * got["trainer"]["devices"] == spec.gpus
    assert got["trainer"]["max_steps"] == spec.max_steps
    assert got["parallel"] == {
        "tensor": lay.tp,
        "pipeline": lay.pp,
        "virtual_pipeline": lay.vp,
        "context": lay.cp,
        "sequence": lay.sp,
        "expert": lay.ep,
        "expert_tensor": lay.etp if lay.ep > 1 else None,
    }
    assert got["data"] == {
        "paths": [str(paths.data_prefix)],
        "global_batch_size": spec.global_batch_size,
        "micro_batch_size": spec.micro_batch_size,
        "seq_length": spec.seq_length,
        "seed": spec.seed,
    }
    assert got["shape"]["seq_length"] == spec.seq_length
    assert (got["optim"]["lr"], got["optim"]["min_lr"], got["optim"]["warmup_steps"]) == (
        spec.lr.max,
        spec.lr.min,
        spec.lr.warmup_steps,
    )
    assert (got["optim"]["scheduler"], got["optim"]["constant_steps"]) == ("CosineAnnealingScheduler", 0)
    assert got["precision"]["plugin"] == "bf16-mixed" and got["precision"]["grad_reduce_in_fp32"] is True
    assert not got["checkpoints"] and not got["resume"]
    for dotted, value in spec.overrides.items():
        assert functools.reduce(getattr, dotted.split("."), recipe) == value, dotted


def test_reference_models_keep_their_architecture(paths):
    got = {
        n: recipes.resolved(recipes.build(MATRIX[n], paths, nodes=4 if MATRIX[n].gpus == 32 else 1))["shape"]
        for n in ("qwen3_8b", "qwen3_30b_a3b", "qwen2_72b")
    }
    assert (got["qwen3_8b"]["num_layers"], got["qwen3_8b"]["hidden_size"]) == (36, 4096)
    assert (got["qwen3_30b_a3b"]["num_moe_experts"], got["qwen3_30b_a3b"]["moe_router_topk"]) == (128, 8)
    assert (got["qwen2_72b"]["num_layers"], got["qwen2_72b"]["hidden_size"]) == (80, 8192)


def test_without_te_switches_off_te_kernels_and_with_te_keeps_the_recipe(paths):
    spec = MATRIX["smoke_qwen3_moe"]
    off = recipes.resolved(recipes.build(spec, paths, te=False))["fusions"]
    assert not any(off[f] for f in (*recipes.TE_FUSIONS, *recipes.TE_MOE))
    on = recipes.build(spec, paths, te=True).model.config
    assert on.masked_softmax_fusion is not False or on.apply_rope_fusion is not False  # the recipe's own choice


def test_timing_callback_logs_tokens_per_second(paths):
    from nemo.utils.exp_manager import TimingCallback

    recipe = recipes.build(MATRIX["smoke_qwen3"], paths, te=False)
    timing = [fiddle.build(cb) for cb in recipe.trainer.callbacks]
    assert any(isinstance(cb, TimingCallback) and cb.log_tokens_per_sec for cb in timing)


def test_parts_instantiate_on_cpu(paths):
    """All but the Trainer (which needs a GPU backend) build for real: config, data module, optimizer, strategy."""
    recipe = recipes.build(MATRIX["smoke_qwen3_moe"], paths, te=False)
    config = fiddle.build(recipe.model.config)
    assert (config.num_layers, config.num_moe_experts, config.moe_grouped_gemm) == (4, 8, False)
    data = fiddle.build(recipe.data)
    assert data.seq_length == 1024 and data.global_batch_size == 16 and data.tokenizer.vocab_size == 151669
    optim = fiddle.build(recipe.optim)
    assert optim.config.lr == 3e-4 and optim.config.use_distributed_optimizer
    strategy = fiddle.build(recipe.trainer.strategy)
    assert strategy.tensor_model_parallel_size == 1


def test_unknown_override_and_recipe_are_clear(paths, tmp_path):
    spec = models.ModelSpec(**{**MATRIX["smoke_qwen3"].__dict__, "overrides": {"model.confg.num_layers": 2}})
    with pytest.raises(AcceptanceError, match="override 'model.confg.num_layers': the recipe has no 'confg'"):
        recipes.build(spec, paths, te=False)
    spec = models.ModelSpec(**{**MATRIX["smoke_qwen3"].__dict__, "recipe": "llama9_1t"})
    with pytest.raises(AcceptanceError, match="NeMo has no recipe 'llm.llama9_1t.pretrain_recipe'"):
        recipes.build(spec, paths, te=False)


@pytest.mark.parametrize("value, expected", [("9e-4", 9e-4), (1e3, 1000.0), (2, 2.0), ("0.5", 0.5)])
def test_override_takes_the_type_of_what_it_replaces(paths, value, expected):
    """A YAML 1.1 '9e-4' is a string: it must reach Adam as a number (it once crashed a run after 40 s)."""
    spec = MATRIX["smoke_qwen3"].with_changes(overrides={"optim.config.lr": value})
    lr = recipes.build(spec, paths, te=False).optim.config.lr
    assert lr == expected and isinstance(lr, float)


@pytest.mark.parametrize(
    "dotted, value, message",
    [
        ("model.config.num_layers", "abc", "expected an integer"),
        ("model.config.num_layers", 1e3, "expected an integer"),
        ("model.config.num_layers", None, "expected a value"),
        ("model.config.num_layers", "", "expected a value"),
        ("optim.config.lr", True, "expected a finite number"),
        ("optim.config.lr", "fast", "expected a finite number"),
        ("optim.config.lr", float("nan"), "expected a finite number"),
        ("model.config.qk_layernorm", "yes", "expected true or false"),
        ("model.config.normalization", [1], "expected a string"),
        ("model.config.no_such_field", 1, "the recipe has no 'no_such_field'"),
    ],
)
def test_override_of_the_wrong_type_is_one_line(paths, dotted, value, message):
    spec = MATRIX["smoke_qwen3"].with_changes(overrides={dotted: value})
    with pytest.raises(AcceptanceError, match=message) as err:
        recipes.build(spec, paths, te=False)
    assert dotted in str(err.value) and "\n" not in str(err.value)
