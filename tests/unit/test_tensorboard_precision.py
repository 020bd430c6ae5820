"""The TensorBoard roll-up keeps the precision of the event file: doubles as doubles, float32 as
the shortest decimal that reads back as the same float32 (issue 13, item 6)."""

from __future__ import annotations

import os
import struct
from pathlib import Path
from typing import Any

import pytest

from tether.track.tensorboard import rollup

# Eight significant digits each: seven (the old roll-up) turns them into 16777220 and 1.0.
BIG, NEAR_ONE = 16777216.0, 1.0000001
# Values a float32 cannot hold: only a double keeps them.
DOUBLES = [16777217.0, 1.0000000000000002, 0.1]


def _need(module: str) -> Any:
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        if os.environ.get("CI") == "true":
            raise
        pytest.skip(f"{module} is not installed (pip install -e '.[dev]' brings it)")


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _values(rolled: dict[str, dict[str, Any]], tag: str) -> tuple[float, float, float]:
    stats = rolled[tag]
    return stats["min"], stats["max"], stats["last"]


def test_torch_summary_writer_float32_and_double(tmp_path: Path) -> None:
    tb = _need("torch.utils.tensorboard")
    writer = tb.SummaryWriter(str(tmp_path / "tb"))
    for step, v in enumerate([BIG, NEAR_ONE]):
        writer.add_scalar("f32/simple", v, step)  # simple_value: a float32
        writer.add_scalar("f32/tensor", v, step, new_style=True)  # DT_FLOAT tensor
        writer.add_scalar("f64/tensor", v, step, new_style=True, double_precision=True)
    for step, v in enumerate(DOUBLES, start=2):
        writer.add_scalar("f64/more", v, step, new_style=True, double_precision=True)
    writer.close()
    rolled = rollup(tmp_path)
    for tag in ("f32/simple", "f32/tensor", "f64/tensor"):
        # 1.0000001 is min, 16777216 max: exactly these decimals, no float32 noise
        assert _values(rolled, tag) == (NEAR_ONE, BIG, NEAR_ONE), tag
    # the float32 read back is the float32 that was written
    assert _f32(rolled["f32/simple"]["min"]) == _f32(NEAR_ONE)
    assert rolled["f64/more"] == {
        "last": 0.1,
        "min": 0.1,
        "max": 16777217.0,
        "step": 4,
    }


def test_tensorboard_protos_double_and_float_tensors(tmp_path: Path) -> None:
    _need("tensorboard")
    from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, types_pb2
    from tensorboard.compat.proto.tensor_shape_pb2 import TensorShapeProto
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path / "tb"))
    meta = summary_pb2.SummaryMetadata(
        plugin_data=summary_pb2.SummaryMetadata.PluginData(plugin_name="scalars")
    )
    values = [BIG, NEAR_ONE, *DOUBLES]
    for step, v in enumerate(values):
        summary = summary_pb2.Summary(
            value=[
                summary_pb2.Summary.Value(
                    tag="double",
                    metadata=meta,
                    tensor=tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_DOUBLE, tensor_shape=TensorShapeProto(), double_val=[v]
                    ),
                ),
                summary_pb2.Summary.Value(
                    tag="float",
                    metadata=meta,
                    tensor=tensor_pb2.TensorProto(
                        dtype=types_pb2.DT_FLOAT, tensor_shape=TensorShapeProto(), float_val=[v]
                    ),
                ),
                summary_pb2.Summary.Value(tag="simple", simple_value=v),
            ]
        )
        writer.add_event(event_pb2.Event(wall_time=1.0 + step, step=step, summary=summary))
    writer.close()
    rolled = rollup(tmp_path)
    assert _values(rolled, "double") == (0.1, 16777217.0, 0.1)
    # float32: 16777217 is not a float32, it was stored as 16777216; 1 + 2**-52 as 1.0
    assert _values(rolled, "float") == (0.1, BIG, 0.1)
    assert _values(rolled, "simple") == (0.1, BIG, 0.1)
    # each float32 point reads as the shortest decimal of the float32 that was stored
    stored = [_one_point(tmp_path / f"one-{n}", v) for n, v in enumerate(values)]
    assert stored == [BIG, NEAR_ONE, BIG, 1.0, 0.1]
    assert [_f32(v) for v in stored] == [_f32(v) for v in values]


def _one_point(folder: Path, v: float) -> float:
    from tensorboard.compat.proto import event_pb2, summary_pb2
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(folder))
    value = summary_pb2.Summary.Value(tag="x", simple_value=v)
    writer.add_event(event_pb2.Event(step=0, summary=summary_pb2.Summary(value=[value])))
    writer.close()
    last: float = rollup(folder)["x"]["last"]
    return last


def test_the_sinks_float32_values_read_back_as_written(tmp_path: Path) -> None:
    """The sink writes float32 (what TensorBoard's fast loader shows): the roll-up reads each
    back as the shortest decimal of its float32, not the 7-digit cut of before."""
    _need("tensorboard")
    from tether.track.sinks.base import SinkContext
    from tether.track.sinks.tensorboard import TensorboardSink

    sink = TensorboardSink(str(tmp_path / "tb"))
    sink.open(SinkContext(run_dir=tmp_path))
    sink.write([{"step": 0, "x": 0.7}, {"step": 1, "x": BIG}, {"step": 2, "x": NEAR_ONE}], 0)
    sink.close("completed", SinkContext(run_dir=tmp_path))
    assert rollup(tmp_path)["x"] == {"last": NEAR_ONE, "min": 0.7, "max": BIG, "step": 2}
