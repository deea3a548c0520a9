"""Device/dtype selection and the process-wide model cache (core.device, core.cache)."""

from __future__ import annotations

import threading

import pytest
import torch

from synesthesia.core import cache
from synesthesia.core.device import select_device, select_dtype
from synesthesia.core.errors import InputError


def _fake(monkeypatch, cuda=False, mps=False, bf16=True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: cuda)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: bf16)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: mps)


@pytest.mark.parametrize("cuda,mps,expected", [(True, True, "cuda"), (False, True, "mps"), (False, False, "cpu")])
def test_auto_prefers_cuda_then_mps_then_cpu(monkeypatch, cuda, mps, expected):
    _fake(monkeypatch, cuda=cuda, mps=mps)
    assert select_device("auto").type == expected
    assert select_device(None).type == expected


def test_explicit_devices_and_their_errors(monkeypatch):
    _fake(monkeypatch)
    assert select_device("cpu") == torch.device("cpu")
    with pytest.raises(InputError, match="CUDA is not available.*--device cpu"):
        select_device("cuda:1")
    with pytest.raises(InputError, match="MPS is not available"):
        select_device("mps")
    with pytest.raises(InputError, match="unknown device 'gpu0'"):
        select_device("gpu0")


def test_dtypes_only_where_the_device_supports_them(monkeypatch):
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    _fake(monkeypatch, cuda=True, bf16=True)
    assert select_dtype("auto", cpu) == torch.float32
    assert select_dtype("auto", cuda) == torch.bfloat16
    assert select_dtype("bf16", cpu) == torch.bfloat16
    assert select_dtype("fp16", cuda) == torch.float16
    assert select_dtype("auto", torch.device("mps")) == torch.float16
    with pytest.raises(InputError, match="fp16 is not supported.*--dtype fp32"):
        select_dtype("fp16", cpu)
    with pytest.raises(InputError, match="unknown dtype 'half'"):
        select_dtype("half", cpu)
    _fake(monkeypatch, cuda=True, bf16=False)
    assert select_dtype("auto", cuda) == torch.float16
    with pytest.raises(InputError, match="does not support bf16.*--dtype fp16"):
        select_dtype("bf16", cuda)


def test_cache_loads_once_per_key_and_clears():
    cache.clear()
    loads = []

    def loader():
        loads.append(1)
        return object()

    k32 = cache.cache_key("/m", {"a": 1}, torch.float32, "cpu")
    k16 = cache.cache_key("/m", {"a": 1}, torch.bfloat16, "cpu")
    a = cache.get_or_load(k32, loader)
    assert cache.get_or_load(k32, loader) is a and len(loads) == 1
    b = cache.get_or_load(k16, loader)
    assert b is not a and len(loads) == 2 and cache.size() == 2
    assert cache.clear() == 2 and cache.size() == 0
    assert cache.get_or_load(k32, loader) is not a and len(loads) == 3
    cache.clear()


def test_cache_gives_every_thread_the_same_model():
    cache.clear()
    got, key = [], cache.cache_key("/shared")
    threads = [threading.Thread(target=lambda: got.append(cache.get_or_load(key, object))) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({id(x) for x in got}) == 1
    cache.clear()
