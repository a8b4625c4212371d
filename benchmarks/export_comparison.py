"""int8 export paths compared on one trained FAN: our QAT path (FX QAT ranges rebuilt in
TensorFlow -> TFLiteConverter), our PTQ path, our QAT ranges as ONNX QDQ for onnxruntime,
and the usual alternatives available here: onnx2tf post-training int8 (calibrated with
explicit NHWC arrays, no downloads) and onnxruntime's quantize_static (PTQ, QDQ).

Columns: parity (PSNR of the network output, as fad-export checks it, and of the denoised
RAW) against PyTorch fp32 and against PyTorch's QAT fake-quant network, denoising RAW PSNR
on the seeded validation patches (overall and per noise level), file size, and CPU
latency at 1 x 4 x 256 x 256 (median, --threads).

    python benchmarks/export_comparison.py [CHECKPOINT] [--qat-steps N] [--threads T]

Default checkpoint: models/fan-student.pt, else the interim runs/fan-charbonnier/model.pt.
Writes benchmarks/results/export_comparison.{md,json}; the exported files go to a
temporary folder (--work to keep them).
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from fad_deploy.data.synth import validation_pairs
from fad_deploy.errors import FadError
from fad_deploy.export.bundle import ExportOptions, export_bundle
from fad_deploy.export.onnx import INPUT_NAME, export_onnx
from fad_deploy.export.tflite import TFLiteOptions
from fad_deploy.export.validate import Thresholds, outputs, parity, psnr_by_shot
from fad_deploy.fileio import write_bytes, write_json, write_text
from fad_deploy.isp.metrics import psnr
from fad_deploy.models.registry import Checkpoint, load_checkpoint, models_dir
from fad_deploy.profile.cpu import cpu_peak
from fad_deploy.quant.qat import FakeQuantRunner, anchor_pair, training_patches
from fad_deploy.runners import load_runner
from fad_deploy.runners.onnx_runner import OnnxRunner
from fad_deploy.runners.tflite_runner import TFLiteRunner
from fad_deploy.runners.torch_runner import TorchRunner
from fad_deploy.train.trainer import sample_batch

ROOT = Path(__file__).resolve().parents[1]
RESULTS = Path(__file__).parent / "results"
LATENCY_SIZE = (256, 256)
CALIBRATION_BATCHES, CALIBRATION_BATCH = 16, 8  # the same patches as our PTQ (PTQConfig defaults)


def default_checkpoint() -> Path:
    shipped = models_dir() / "fan-student.pt"
    return shipped if shipped.is_file() else ROOT / "runs" / "fan-charbonnier" / "model.pt"


def calibration_inputs(ckpt: Checkpoint, crop: int) -> np.ndarray:
    """Seeded anchor-space training patches (N, 4, crop, crop), as our PTQ observes them."""
    data = training_patches(ckpt, crop, 0, None)
    return np.concatenate([anchor_pair(sample_batch(data, s, CALIBRATION_BATCH, 0), ckpt.anchor)[0].numpy()
                           for s in range(CALIBRATION_BATCHES)])


def mosaics(patches: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Tile (N, 4, p, p) patches into (N', 4, h, w) calibration frames of a larger fixed size."""
    p = patches.shape[-1]
    rows, cols = size[0] // p, size[1] // p
    n = len(patches) // (rows * cols)
    grid = patches[: n * rows * cols].reshape(n, rows, cols, 4, p, p)
    return np.ascontiguousarray(grid.transpose(0, 3, 1, 4, 2, 5).reshape(n, 4, rows * p, cols * p))


def onnx2tf_int8(ckpt: Checkpoint, calib: np.ndarray, work: Path) -> Path:
    """onnx2tf -oiqt on a static float ONNX of the calibration frames' size, calibrated
    with those frames as explicit NHWC arrays."""
    import onnx2tf

    size = calib.shape[-2:]
    work = work / f"onnx2tf-{size[0]}x{size[1]}"
    onnx_path, npy = work / "fp32-static.onnx", work / "calibration_nhwc.npy"
    write_bytes(onnx_path, export_onnx(ckpt, False, {}, fixed_size=size)[0])
    np.save(npy, np.ascontiguousarray(calib.transpose(0, 2, 3, 1)))
    out = work / "model"
    onnx2tf.convert(input_onnx_file_path=str(onnx_path), output_folder_path=str(out),
                    output_integer_quantized_tflite=True, quant_type="per-channel",
                    custom_input_op_name_np_data_path=[[INPUT_NAME, str(npy), np.zeros((1, 1, 1, 4)),
                                                        np.ones((1, 1, 1, 4))]],
                    input_quant_dtype="int8", output_quant_dtype="int8", non_verbose=True)
    found = sorted(out.glob("*_full_integer_quant.tflite"))
    if not found:
        raise FadError(f"onnx2tf wrote no full-integer model in {out}")
    return found[0]


def ort_quantize_static(fp32_onnx: Path, calib: np.ndarray, work: Path) -> Path:
    """onnxruntime's post-training static quantization to QDQ (per-channel weights)."""
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{INPUT_NAME: calib[i : i + 1]} for i in range(len(calib))])

        def get_next(self):
            return next(self.items, None)

    out = work / "ort-static-qdq.onnx"
    quantize_static(str(fp32_onnx), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def latency_ms(runner, threads: int) -> float | None:
    u = np.random.default_rng(0).random((1, 4, *LATENCY_SIZE), dtype=np.float32)
    try:
        if isinstance(runner, TFLiteRunner):
            runner.prepare(LATENCY_SIZE)
        return float(np.median(runner.time(u, warmup=3, repeats=15)))
    except (FadError, RuntimeError, ValueError) as e:
        print(f"  no latency for {runner.backend}: {e}", file=sys.stderr)
        return None


def evaluate(label: str, runner, path: Path | None, refs: dict, pairs: dict, threads: int, timed=None) -> dict:
    """Quality of ``runner`` on the validation patches; latency of ``timed`` (default: the same
    runner) at the latency size."""
    y, x = outputs(runner, pairs)
    mean, levels = psnr_by_shot(x, pairs)
    row = {"path": label, "backend": runner.backend, "file_kb": round(path.stat().st_size / 1024, 1) if path else None,
           "parity_vs_fp32_db": round(parity(y, refs["torch"][0]), 2),
           "parity_vs_qat_db": round(parity(y, refs["torch-int8"][0]), 2),
           "parity_raw_vs_qat_db": round(psnr(x, refs["torch-int8"][1]), 2),
           "raw_psnr_db": round(mean, 3), "psnr_by_shot": {k: round(v, 2) for k, v in levels.items()},
           "drop_db": round(refs["psnr"] - mean, 3)}
    ms = latency_ms(timed or runner, threads)
    row["latency_ms"] = round(ms, 2) if ms is not None else None
    print(f"  {label}: parity fp32 {row['parity_vs_fp32_db']} dB, parity QAT {row['parity_vs_qat_db']} dB, "
          f"PSNR {row['raw_psnr_db']} dB, {row['file_kb']} KB, {row['latency_ms']} ms")
    return row


def markdown(doc: dict) -> str:
    rows = doc["rows"]
    shots = list(rows[0]["psnr_by_shot"])
    lines = [f"# int8 export paths compared: {doc['model']}", "",
             f"Checkpoint {doc['checkpoint']} (validation RAW PSNR in its card: {doc['card_psnr']}); QAT "
             f"{doc['qat_steps']} steps took {doc['qat_time_s']} s; PTQ/onnx2tf/onnxruntime calibrated on the "
             f"same {doc['calibration_patches']} seeded training patches. Validation: {doc['validation']}. "
             f"Latency: median of 15 runs at 1 x 4 x {LATENCY_SIZE[0]} x {LATENCY_SIZE[1]}, {doc['threads']} "
             f"thread(s), on this shared 2-core CPU ({doc['cpu']}), so only the ratios mean much.", "",
             "| path | backend | parity vs fp32 dB | parity vs QAT fake-quant dB | same, on denoised RAW dB "
             "| RAW PSNR dB | drop vs fp32 dB | size KB | latency ms |",
             "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lat = f"{r['latency_ms']:.1f}" if r["latency_ms"] is not None else "n/a"
        size = f"{r['file_kb']:.1f}" if r["file_kb"] is not None else "-"
        lines.append(f"| {r['path']} | {r['backend']} | {r['parity_vs_fp32_db']:.2f} | {r['parity_vs_qat_db']:.2f} | "
                     f"{r['parity_raw_vs_qat_db']:.2f} | {r['raw_psnr_db']:.3f} | {r['drop_db']:+.3f} | {size} | {lat} |")
    lines += ["", "RAW PSNR (dB) per shot-noise level a:", "",
              "| path | " + " | ".join(f"a={s}" for s in shots) + " |",
              "| --- | " + " | ".join("---:" for _ in shots) + " |"]
    lines += [f"| {r['path']} | " + " | ".join(f"{r['psnr_by_shot'][s]:.2f}" for s in shots) + " |" for r in rows]
    lines += ["", "Which int8 quantizers cost the PSNR: `python benchmarks/int8_sensitivity.py "
              "<export folder>/<model>.int8.pt`."]
    return "\n".join(lines + ["", *doc["notes"]]) + "\n"


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("checkpoint", nargs="?", type=Path, default=None)
    p.add_argument("--qat-steps", type=int, default=300)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, help="keep the exported files here (default: a temporary folder)")
    p.add_argument("--source-label", help="how to name the checkpoint in the results (e.g. for a snapshot copy)")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    path = args.checkpoint or default_checkpoint()
    ckpt = load_checkpoint(path)
    work = args.work or Path(tempfile.mkdtemp(prefix="export_comparison_"))
    base = ExportOptions(targets=("tflite", "onnx"), int8=True, tflite=TFLiteOptions(),
                         thresholds=Thresholds(max_drop_db=float("inf")), threads=args.threads)
    # one 4-channel int8 input, as the other paths take (the split input is int8_split_input.py's subject)
    base = dataclasses.replace(base, qat=dataclasses.replace(base.qat, steps=args.qat_steps, input_split=0))
    print(f"our QAT and PTQ exports of {path} into {work}")
    export_bundle([("qat", path)], base, work / "ours-qat")
    export_bundle([("ptq", path)], dataclasses.replace(base, ptq=True, targets=("tflite",)), work / "ours-ptq")
    qat = load_checkpoint(work / "ours-qat" / "qat.int8.pt")
    pairs = validation_pairs()
    refs = {"torch": outputs(TorchRunner(ckpt), pairs), "torch-int8": outputs(FakeQuantRunner(qat), pairs)}
    refs["psnr"] = psnr_by_shot(refs["torch"][1], pairs)[0]
    calib64 = calibration_inputs(ckpt, 64)

    rows = [evaluate("PyTorch fp32", TorchRunner(ckpt), None, refs, pairs, args.threads),
            evaluate("PyTorch QAT fake-quant (reference)", FakeQuantRunner(qat), None, refs, pairs, args.threads)]
    t = args.threads
    for label, backend, folder, file in [
        ("ours: TFLite fp32", "tflite-fp32", "ours-qat", "qat.fp32.tflite"),
        ("ours: QAT ranges -> TF rebuild -> TFLite int8", "tflite-int8", "ours-qat", "qat.int8.tflite"),
        ("ours: PTQ (calibration only) -> TFLite int8", "tflite-int8", "ours-ptq", "ptq.int8.tflite"),
        ("ours: ONNX fp32 (onnxruntime)", "onnx-fp32", "ours-qat", "qat.fp32.onnx"),
        ("ours: QAT ranges -> ONNX QDQ (onnxruntime)", "onnx-int8", "ours-qat", "qat.int8.onnx"),
    ]:
        rows.append(evaluate(label, load_runner(backend, work / folder, t), work / folder / file, refs, pairs, t))
    notes = []
    try:
        # Fixed-size models: one at the validation size for quality, one at the latency size
        # (calibrated on the same patches tiled into frames) for timing.
        o2t = onnx2tf_int8(ckpt, calib64, work)
        o2t_big = onnx2tf_int8(ckpt, mosaics(calib64, LATENCY_SIZE), work)
        rows.append(evaluate("onnx2tf -oiqt PTQ (NHWC calibration) -> TFLite int8",
                             TFLiteRunner(o2t, ckpt.anchor, t, "tflite-int8", residual=True), o2t, refs, pairs, t,
                             timed=TFLiteRunner(o2t_big, ckpt.anchor, t, "tflite-int8", residual=True)))
    except Exception as e:  # noqa: BLE001 - a third-party converter failing is a result to report
        notes.append(f"- onnx2tf int8 failed: {type(e).__name__}: {str(e).splitlines()[0][:200]}")
    ort_q = ort_quantize_static(work / "ours-qat" / "qat.fp32.onnx", calib64, work)
    rows.append(evaluate("onnxruntime quantize_static PTQ -> ONNX QDQ", OnnxRunner(ort_q, ckpt.anchor, t, "onnx-int8", residual=True),
                         ort_q, refs, pairs, t))
    notes += ["- Parity = PSNR of the network output (anchor space, peak = the reference's range) against the "
              "PyTorch output (fad-export's check); 'same, on denoised RAW' after the k-sigma inverse, which scales "
              "differences by a / a_A (up to ~11 at the highest noise). Our QAT paths are meant to match the "
              "fake-quant network; the PTQ paths can only be compared with fp32.",
              "- Every exported network (ours and the alternatives, which convert our fp32 ONNX) outputs the "
              "residual; the runner adds the input in float. The int8 input still has one per-tensor scale over "
              "the anchor-space range, which spans a_A / a_min times the [0, 1] RAW range for a full-range "
              "model: low-noise images use the whole grid, high-noise images (dim in anchor space) only a few "
              "levels; see the per-level table (benchmarks/residual_int8.py compares with the old denoised output).",
              "- onnxruntime QDQ (ours) stores weights as uint8 with zero point 128: its u8 x s8 kernels "
              "saturate on this AVX2 CPU without VNNI."]
    source = args.source_label or str(path.relative_to(ROOT) if path.is_relative_to(ROOT) else path)
    doc = {"model": ckpt.name, "checkpoint": f"{source} ({ckpt.card.get('steps', '?')} training steps)",
           "card_psnr": ckpt.card.get("validation_raw_psnr"), "qat_steps": args.qat_steps,
           "qat_time_s": qat.card.get("quantization", {}).get("time_s"), "threads": args.threads,
           "calibration_patches": len(calib64), "cpu": cpu_peak().model,
           "validation": f"{len(pairs['noisy'])} seeded 64x64 patches, 6 shot levels (validation_pairs)",
           "rows": rows, "notes": notes}
    write_json(RESULTS / "export_comparison.json", doc)
    write_text(RESULTS / "export_comparison.md", markdown(doc))
    print(markdown(doc))


if __name__ == "__main__":
    main()
