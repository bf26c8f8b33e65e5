"""The NaN locator (benchmarks/nonfinite_trace.py) names the module whose gradient first goes non-finite."""

import importlib.util
from pathlib import Path

import torch

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks/nonfinite_trace.py"
spec = importlib.util.spec_from_file_location("nonfinite_trace", SCRIPT)
nonfinite_trace = importlib.util.module_from_spec(spec)
spec.loader.exec_module(nonfinite_trace)


class ZeroSqrt(torch.nn.Module):
    """Finite forward (sqrt of zeros); its backward sends inf·0 = NaN into the module before it."""

    def forward(self, x):
        return torch.sqrt(x * 0.0)


def traced(model_factory, x):
    lines = []
    tracer = nonfinite_trace.Tracer(out=lines.append)
    remove = tracer.install()
    try:
        model = model_factory()
        model(x).sum().backward()
    finally:
        remove()
    return tracer, lines


def test_names_the_first_nonfinite_gradient_and_parameter():
    torch.manual_seed(0)
    tracer, lines = traced(
        lambda: torch.nn.Sequential(torch.nn.Linear(4, 4), ZeroSqrt(), torch.nn.Linear(4, 2)), torch.randn(3, 4)
    )
    assert "forward" not in tracer.first  # every forward output was finite
    assert tracer.first["grad_out"] == "#0 Linear"  # the gradient into the first Linear's output is NaN
    assert tracer.first["param"] in ("Linear.weight", "Linear.bias")  # the first Linear's (the last's are finite)
    assert sum(line.startswith("[trace] param") and "NON-FINITE" in line for line in lines) == 2
    assert any("FIRST NON-FINITE grad_out: #0 Linear" in line for line in lines)


def test_a_finite_run_reports_nothing_and_the_hooks_come_off():
    tracer, lines = traced(lambda: torch.nn.Linear(4, 2), torch.randn(3, 4))
    assert tracer.first == {} and not any("NON-FINITE" in line for line in lines)
    calls = []
    tracer.out = calls.append
    torch.nn.Linear(4, 2)(torch.full((1, 4), float("nan")))  # after remove(): no hook sees this NaN
    assert calls == [] and tracer.first == {}
