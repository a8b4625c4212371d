"""How much faster int8 can be than float32 on this CPU, independent of our network: single
layers of the kinds the FAN is made of, converted by TFLiteConverter to float32 and to
full-integer int8 (random calibration data; only the speed matters here), timed with the
LiteRT interpreter (XNNPACK) side by side, plus onnxruntime float32 for the same layer.

It answers whether issue 5's "int8 TFLite >= 2x faster than fp32 onnxruntime" is a property
of the model or of the CPU: if a plain 3x3 convolution is not 2x faster in int8 here, no
model made of convolutions can be.

    python benchmarks/int8_probe.py [--threads 1] [--size 128] [--repeats 20]

Writes benchmarks/results/int8_probe.md and .json.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn

from fad_deploy.export.tflite import quiet_tensorflow
from fad_deploy.fileio import write_json, write_text
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.profile.table import markdown_table

RESULTS = Path(__file__).resolve().parents[1] / "benchmarks" / "results"
CHANNELS = 64
# (name, kernel, groups): the FAN's layer kinds at one width
LAYERS = [("conv 3x3", 3, 1), ("conv 1x1", 1, 1), ("grouped conv 3x3, 4 channels/group", 3, CHANNELS // 4)]
WARMUP = 3


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--size", type=int, default=128, help="input height = width (NHWC, 64 channels)")
    p.add_argument("--repeats", type=int, default=20)
    return p.parse_args()


def median_ms(run, repeats: int) -> float:
    for _ in range(WARMUP):
        run()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        run()
        times.append((time.perf_counter() - t0) * 1e3)
    return float(np.median(times))


def tflite_models(tf, size: int, kernel: int, groups: int) -> dict[str, bytes]:
    layer = tf.keras.layers.Conv2D(CHANNELS, kernel, padding="same", groups=groups, activation="relu")
    inputs = tf.keras.Input((size, size, CHANNELS), batch_size=1)
    model = tf.keras.Model(inputs, layer(inputs))
    rng = np.random.default_rng(0)

    def calibration():
        for _ in range(4):
            yield [rng.standard_normal((1, size, size, CHANNELS)).astype(np.float32)]

    fp32 = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = calibration
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.int8
    return {"tflite-fp32": fp32, "tflite-int8": conv.convert()}


def time_tflite(model: bytes, threads: int, repeats: int) -> float:
    from ai_edge_litert.interpreter import Interpreter

    it = Interpreter(model_content=model, num_threads=threads)
    it.allocate_tensors()
    inp = it.get_input_details()[0]
    it.set_tensor(inp["index"], np.zeros(inp["shape"], inp["dtype"]))
    return median_ms(it.invoke, repeats)


def time_onnx(size: int, kernel: int, groups: int, threads: int, repeats: int) -> float:
    import onnxruntime as ort

    net = nn.Sequential(nn.Conv2d(CHANNELS, CHANNELS, kernel, padding=kernel // 2, groups=groups), nn.ReLU()).eval()
    x = torch.zeros(1, CHANNELS, size, size)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "layer.onnx"
        torch.onnx.export(net, (x,), str(path), dynamo=False)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = threads
        session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: x.numpy()}
    return median_ms(lambda: session.run(None, feed), repeats)


def main():
    args = parse_args()
    tf = quiet_tensorflow()
    rows = []
    for name, kernel, groups in LAYERS:
        macs = args.size * args.size * CHANNELS * (CHANNELS // groups) * kernel * kernel
        models = tflite_models(tf, args.size, kernel, groups)
        ms = {backend: time_tflite(m, args.threads, args.repeats) for backend, m in models.items()}
        ms["onnx-fp32"] = time_onnx(args.size, kernel, groups, args.threads, args.repeats)
        rows.append({"layer": name, "mmacs": round(macs / 1e6, 1),
                     **{f"{b} ms": round(v, 3) for b, v in ms.items()},
                     "int8 vs tflite-fp32": round(ms["tflite-fp32"] / ms["tflite-int8"], 2),
                     "int8 vs onnx-fp32": round(ms["onnx-fp32"] / ms["tflite-int8"], 2)})
        print(rows[-1])
    peak = cpu_peak()
    doc = {"cpu": peak.to_dict(), "threads": args.threads, "input": [1, args.size, args.size, CHANNELS],
           "repeats": args.repeats, "layers": rows}
    RESULTS.mkdir(parents=True, exist_ok=True)
    write_json(RESULTS / "int8_probe.json", doc)
    write_text(RESULTS / "int8_probe.md", "\n".join([
        "# int8 vs float32 speed of single layers on this CPU", "",
        f"CPU: {peak.model}, {peak.simd}, VNNI: {'yes' if peak.vnni else 'no'}; {args.threads} thread(s); "
        f"input 1x{args.size}x{args.size}x{CHANNELS} (NHWC); median of {args.repeats} runs after {WARMUP} "
        "warm-up runs. Made by `python benchmarks/int8_probe.py`.", "",
        markdown_table(list(rows[0]), [list(r.values()) for r in rows]), "",
        "Speed-up > 1: int8 TFLite (XNNPACK) is faster. Issue 5 asks int8 TFLite to be >= 2x faster than "
        "float32 onnxruntime on the whole student; this bounds what any network of these layers can reach "
        "on this CPU.", ""]))
    print(f"wrote {RESULTS / 'int8_probe.md'}")


if __name__ == "__main__":
    main()
