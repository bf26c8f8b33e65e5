"""The training entry's runtime workarounds, on CPU (their effect on a GPU: tests/gpu, BENCHMARKS.md)."""

from types import SimpleNamespace

import pytest

from qwen_acceptance.run import train

pytestmark = pytest.mark.slow  # imports NeMo


class Stream:
    def __init__(self, name, events):
        self.name, self.events = name, events

    def wait_stream(self, other):
        self.events.append(f"{self.name} waits for {other.name}")


@pytest.fixture
def nemo_init_ddp(monkeypatch):
    """NeMo's MegatronParallel with its own init_ddp replaced by a recorder (restored afterwards)."""
    import torch
    from nemo.lightning.megatron_parallel import MegatronParallel

    events = []

    def init_ddp(self):
        events.append("nemo init_ddp")
        if getattr(self, "fail", False):
            raise RuntimeError("boom")

    monkeypatch.setattr(MegatronParallel, "init_ddp", init_ddp)
    side, default = Stream("side", events), Stream("default", events)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda: side)
    monkeypatch.setattr(torch.cuda, "default_stream", lambda: default)
    return MegatronParallel, events


def test_ddp_is_built_between_two_waits(nemo_init_ddp):
    cls, events = nemo_init_ddp
    assert "stream order" in train.order_ddp_init()
    cls.init_ddp(SimpleNamespace())
    assert events == ["side waits for default", "nemo init_ddp", "default waits for side"]


def test_the_default_stream_waits_even_when_ddp_fails(nemo_init_ddp):
    cls, events = nemo_init_ddp
    train.order_ddp_init()
    with pytest.raises(RuntimeError, match="boom"):
        cls.init_ddp(SimpleNamespace(fail=True))
    assert events[-1] == "default waits for side"


def test_installing_twice_wraps_nemo_once(nemo_init_ddp):
    cls, events = nemo_init_ddp
    train.order_ddp_init()
    train.order_ddp_init()
    cls.init_ddp(SimpleNamespace())
    assert events.count("nemo init_ddp") == 1 and len(events) == 3
