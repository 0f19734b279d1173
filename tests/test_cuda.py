"""The CUDA paths: skipped where no GPU is visible (CI), run by benchmarks/gpu.sh on a GPU machine.
Compiled units on CUDA: tests/test_activations.py::test_compiled_units_equal_eager_for_every_loss."""

import re

import pytest
import torch

from ftprop import LOSSES, Sign, Staircase, Step, build_model
from ftprop.config import Config, ConfigError, apply_overrides
from ftprop.engine import train

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def fwd_bwd(module, x, g):
    x = x.clone().requires_grad_()
    y = module(x)
    y.backward(g)
    return y.detach(), x.grad


@pytest.mark.parametrize("name", sorted(LOSSES))
@pytest.mark.parametrize("weighted", [True, False])
def test_units_on_gpu_match_cpu(name, weighted):
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 33, generator=gen) * 2
    x[0, :4] = torch.tensor([0.0, -0.0, 1.0, -1.0])  # sign(0) = -1 and the kinks
    g = torch.randn(64, 33, generator=gen)
    g[1, :5] = 0.0
    for module in (Sign(name, weighted), Step(name, weighted), Staircase(3, name, weighted),
                   Staircase(5, name, weighted, surrogate="per_step")):
        y_cpu, d_cpu = fwd_bwd(module, x, g)
        y_gpu, d_gpu = fwd_bwd(module, x.cuda(), g.cuda())
        assert torch.equal(y_gpu.cpu(), y_cpu), module
        torch.testing.assert_close(d_gpu.cpu(), d_cpu, rtol=1e-5, atol=1e-6, msg=str(module))


@pytest.mark.parametrize("model", ["convnet4", "convnet8", "resnet18_cifar"])
def test_bf16_channels_last_step_on_gpu(model):
    torch.manual_seed(0)
    m = build_model(model, num_classes=10, input_shape=(3, 32, 32), activation="sign").cuda()
    m = m.to(memory_format=torch.channels_last)
    x = torch.randn(16, 3, 32, 32, device="cuda").contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (16,), device="cuda")
    with torch.autocast("cuda", dtype=torch.bfloat16):
        out = m(x)
    loss = torch.nn.functional.cross_entropy(out.float(), y)
    loss.backward()
    grads = [p.grad for p in m.parameters()]
    assert torch.isfinite(loss) and all(gr is not None and torch.isfinite(gr).all() for gr in grads)
    assert any(gr.abs().sum() > 0 for gr in grads[:-2])  # the update reaches below the last layer


def test_training_on_gpu_learns_digits(tmp_path):
    cfg = apply_overrides(Config(name="gpu"), ["train.device=cuda", "train.epochs=5", "train.batch_size=64",
                                               "train.tensorboard=false", "model.options.hidden=[128]"])
    result = train(cfg, tmp_path / "run", log=None)
    assert next(result.model.parameters()).is_cuda
    assert result.history[-1]["test_acc"] > 0.85


@pytest.mark.parametrize("optim", [["optim.name=adam"], ["optim.name=sgd", "optim.lr=0.05"]])
def test_compiled_training_with_cuda_graphs_on_gpu(tmp_path, monkeypatch, optim):
    """train.compile_mode = reduce-overhead: the compiled step is recorded and replayed as CUDA
    graphs (none skipped), learns as eager does, and resumes. SGD's momentum buffers are made
    before the first graph; Adam is capturable."""
    from torch._dynamo.utils import counters
    from torch._inductor.cudagraph_trees import CUDAGraphTreeManager

    recorded = []
    record = CUDAGraphTreeManager.record_function
    monkeypatch.setattr(CUDAGraphTreeManager, "record_function",
                        lambda self, *a, **k: recorded.append(1) or record(self, *a, **k))
    opts = ["train.device=cuda", "train.epochs=3", "train.batch_size=64", "train.tensorboard=false",
            "model.options.hidden=[128]", *optim]
    eager = train(apply_overrides(Config(name="e"), opts), save=False, log=None)
    graphed = ["train.compile=true", "train.compile_mode=reduce-overhead"]
    counters.clear()
    result = train(apply_overrides(Config(name="g"), opts + graphed), tmp_path / "run", log=None)
    assert recorded and counters["inductor"]["cudagraph_skips"] == 0
    for a, b in zip(eager.history, result.history):
        assert a["test_acc"] == pytest.approx(b["test_acc"], abs=0.03)
    assert result.history[-1]["test_acc"] > 0.85
    resumed = train(apply_overrides(Config(name="g"), opts + graphed + ["train.epochs=4"]), tmp_path / "run",
                    resume=True, log=None)
    assert len(resumed.history) == 4 and resumed.history[-1]["test_acc"] > 0.85


@pytest.mark.parametrize("two_passes, named", [("optim.sam_rho=0.05", "optim.sam_rho > 0"),
                                               ("train.twin=relu", "train.twin")])
def test_sam_and_a_twin_are_refused_where_cuda_graphs_would_replay_the_step(two_passes, named):
    cfg = apply_overrides(Config(name="t"), ["train.device=cuda", "train.compile=true", "train.epochs=1",
                                             "train.compile_mode=reduce-overhead", two_passes,
                                             "train.tensorboard=false"])
    with pytest.raises(ConfigError, match=rf"{re.escape(named)} runs two passes per step.*CUDA graphs"):
        train(cfg, save=False, log=None)


def test_benchmark_graphs_sharing_one_pool_train_as_eager_steps_do():
    """benchmarks/perf.py's graphed steps share one memory pool per model (each graph's temporaries
    reused by the next capture): replayed in any order, each still trains as its eager twin."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    import perf

    x, y = perf.batch("mlp", 16, 10, torch.device("cuda"), False)  # (no dropout: graphs and eager steps draw apart)
    pool = torch.cuda.graph_pool_handle()
    graphed, eager = [], []
    for kw in ({"activation": "relu"}, {"activation": "sign", "loss": "soft_hinge"},
               {"activation": "staircase", "loss": "saturated_hinge"}):
        m = perf.make("mlp", kw, 10, torch.device("cuda"), False)
        twin = perf.make("mlp", kw, 10, torch.device("cuda"), False)  # the same seed: the same weights
        opt = torch.optim.Adam(m.parameters(), 1e-3, capturable=True)
        graphed.append(perf.GraphedStep(m, opt, x, y, False, pool))  # 3 eager warm-up steps (a capture runs nothing)
        twin_opt = torch.optim.Adam(twin.parameters(), 1e-3, capturable=True)
        eager.append((twin, twin_opt))
        for _ in range(3):
            perf.train_step(twin, twin_opt, x, y, False)
    for i in (2, 0, 1, 1, 2, 0, 0):  # interleaved, out of capture order
        graphed[i].graph.replay()
        perf.train_step(*eager[i], x, y, False)
    torch.cuda.synchronize()
    for g, (twin, twin_opt) in zip(graphed, eager):  # parameters, BN statistics and Adam's state alike
        torch.testing.assert_close(g.model.state_dict(), twin.state_dict(), rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(g.opt.state_dict()["state"], twin_opt.state_dict()["state"], rtol=1e-4, atol=1e-5)
