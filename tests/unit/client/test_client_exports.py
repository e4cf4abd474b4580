from __future__ import annotations

import inspect

import tritonforge.client as client_pkg


def test_client_all_is_sorted_when_read() -> None:
    assert client_pkg.__all__ == sorted(client_pkg.__all__)


def test_client_all_lists_every_public_member_when_compared_to_module() -> None:
    public = {
        name
        for name, value in vars(client_pkg).items()
        if not name.startswith("_") and not inspect.ismodule(value) and name != "annotations"
    }
    assert set(client_pkg.__all__) == public


def test_client_all_holds_the_contract_names_when_imported() -> None:
    from tritonforge.client import AsyncTritonClient, ClientSettings, TensorInfo, TritonClient

    assert {"AsyncTritonClient", "ClientSettings", "TensorInfo", "TritonClient"} <= set(client_pkg.__all__)
    for method in ("infer", "model_inputs", "model_outputs", "max_batch_size", "wait_until_ready", "is_server_ready"):
        assert callable(getattr(TritonClient, method))
        assert inspect.iscoroutinefunction(getattr(AsyncTritonClient, method))
    assert inspect.iscoroutinefunction(AsyncTritonClient.close)
    assert ClientSettings.model_config["env_prefix"] == "TRITONFORGE_CLIENT_"
    assert TensorInfo("x", "FP32", (1,)).np_dtype.name == "float32"
