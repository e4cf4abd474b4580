"""Run a TensorRT engine once on host arrays, and the CUDA plumbing that needs (GPU only).

    outputs = run_engine(Path("gpu_model_repository/digits_trt/1/model.sm90.plan"), {"image": images})
    logits = outputs["logits"]

Why: to check a freshly built engine against ONNX Runtime on the GPU node (tests/gpu) without starting Triton.
Device memory goes through cuda-python when it is installed, else through a CUDA build of torch, so either one is
enough. TensorRT and CUDA are imported only when an engine runs, so importing this module needs neither.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from tritonforge.converters.gpu_info import import_tensorrt
from tritonforge.errors import ConversionError


def _import_cudart() -> Any:
    """Return cuda-python's runtime module, or None when it is not installed."""
    try:
        from cuda.bindings import runtime as cudart  # cuda-python >= 12.6
    except ImportError:
        try:
            from cuda import cudart  # older cuda-python
        except ImportError:
            return None
    return cudart


def _import_torch_cuda() -> Any:
    """Return torch when it has a usable CUDA device (the fallback when cuda-python is missing)."""
    try:
        import torch
    except ImportError as exc:
        raise ConversionError("reaching the GPU needs cuda-python or a CUDA torch; `pip install cuda-python`") from exc
    if not torch.cuda.is_available():
        raise ConversionError("torch here has no CUDA device and cuda-python is missing; `pip install cuda-python`")
    return torch


def set_cuda_device(device: int) -> None:
    """Make `device` current for the TensorRT builder (device 0 is already current by default)."""
    cudart = _import_cudart()
    if cudart is not None:
        _check_cuda(cudart, cudart.cudaSetDevice(device))
    elif device != 0:
        _import_torch_cuda().cuda.set_device(device)


def _check_cuda(cudart: Any, result: Any) -> Any:
    error, *values = result if isinstance(result, tuple) else (result,)
    if error != cudart.cudaError_t.cudaSuccess:
        raise ConversionError(f"CUDA call failed: {error}")
    return values[0] if values else None


class _DeviceMemory:
    """Device buffers and one stream, through cuda-python when installed, else through a CUDA build of torch."""

    def __init__(self, device: int) -> None:
        self._cudart = _import_cudart()
        self._buffers: list[Any] = []
        if self._cudart is not None:
            _check_cuda(self._cudart, self._cudart.cudaSetDevice(device))
            self._stream = _check_cuda(self._cudart, self._cudart.cudaStreamCreate())
            self.stream_handle = int(self._stream)
        else:
            torch = _import_torch_cuda()
            self._torch = torch
            self._device = torch.device("cuda", device)
            self._stream = torch.cuda.Stream(device=self._device)
            self.stream_handle = int(self._stream.cuda_stream)

    def upload(self, array: NDArray[Any]) -> int:
        """Copy a host array to a new device buffer; return its address."""
        if self._cudart is None:
            tensor = self._torch.from_numpy(np.ascontiguousarray(array)).to(self._device)
            self._buffers.append(tensor)
            return int(tensor.data_ptr())
        cudart = self._cudart
        pointer = _check_cuda(cudart, cudart.cudaMalloc(max(array.nbytes, 1)))
        self._buffers.append(pointer)
        kind = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        _check_cuda(cudart, cudart.cudaMemcpy(pointer, array.ctypes.data, array.nbytes, kind))
        return int(pointer)

    def download(self, address: int, array: NDArray[Any]) -> None:
        """Copy a device buffer into a host array, after the stream finished."""
        self.synchronize()
        if self._cudart is None:
            for tensor in self._buffers:
                if int(tensor.data_ptr()) == address:
                    array[...] = tensor.cpu().numpy().reshape(array.shape)
                    return
            raise ConversionError(f"no device buffer at {address:#x}")
        kind = self._cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _check_cuda(self._cudart, self._cudart.cudaMemcpy(array.ctypes.data, address, array.nbytes, kind))

    def ready(self) -> None:
        """Make the uploads visible to work on the stream (torch copies run on its own current stream)."""
        if self._cudart is None:
            self._torch.cuda.synchronize(self._device)

    def synchronize(self) -> None:
        """Wait for the stream."""
        if self._cudart is None:
            self._stream.synchronize()
        else:
            _check_cuda(self._cudart, self._cudart.cudaStreamSynchronize(self._stream))

    def close(self) -> None:
        """Free every buffer and the stream."""
        if self._cudart is not None:
            for pointer in self._buffers:
                self._cudart.cudaFree(pointer)
            self._cudart.cudaStreamDestroy(self._stream)
        self._buffers.clear()


def run_engine(engine_path: Path, inputs: Mapping[str, NDArray[Any]], *, device: int = 0) -> dict[str, NDArray[Any]]:
    """Run a serialized engine once on host arrays and return its outputs (needs the GPU type that built it).

    Args:
        engine_path: the .plan file.
        inputs: one array per engine input, batch axis included (cast to the engine's dtypes).
        device: the CUDA device.

    Returns:
        One array per engine output.

    Raises:
        ConversionError: no TensorRT or CUDA, an engine for another GPU or TensorRT version, or missing inputs.
    """
    trt = import_tensorrt()
    memory = _DeviceMemory(device)
    try:
        logger = trt.Logger(trt.Logger.WARNING)
        engine = trt.Runtime(logger).deserialize_cuda_engine(engine_path.read_bytes())
        if engine is None:
            raise ConversionError(
                f"TensorRT {trt.__version__} cannot load {engine_path}: it was built for another GPU type or "
                "TensorRT version; rebuild it on this node"
            )
        context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        input_names = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        missing = sorted(set(input_names) - set(inputs))
        if missing:
            raise ConversionError(f"engine {engine_path.name} needs inputs {missing}; got {sorted(inputs)}")
        for name in input_names:
            array = np.ascontiguousarray(inputs[name], dtype=trt.nptype(engine.get_tensor_dtype(name)))
            context.set_input_shape(name, array.shape)
            context.set_tensor_address(name, memory.upload(array))
        outputs: dict[str, tuple[int, NDArray[Any]]] = {}
        for name in names:
            if name in input_names:
                continue
            host = np.empty(tuple(context.get_tensor_shape(name)), dtype=trt.nptype(engine.get_tensor_dtype(name)))
            address = memory.upload(host)  # allocates the output buffer (contents overwritten by the engine)
            context.set_tensor_address(name, address)
            outputs[name] = (address, host)
        memory.ready()
        if not context.execute_async_v3(memory.stream_handle):
            raise ConversionError(f"TensorRT failed to run {engine_path.name}")
        for address, host in outputs.values():
            memory.download(address, host)
        return {name: host for name, (_, host) in outputs.items()}
    finally:
        memory.close()
