#!/usr/bin/env python3
"""PyTorch peer of Loupe's CUDA ResNet-50, the roofline ceilings, and the device-check report.

The network is the same Keras ResNet50 v1 as native/engine/src/resnet50.cc: explicit ZeroPad2d(3)
before the 7x7/2 conv1 (with bias), BatchNorm eps 1e-3 (folded into the convs in float64, as Loupe
does; --no-fold keeps real BatchNorm2d layers), ZeroPad2d(1) + MaxPool 3x3/2, bottlenecks with the
stride on the first 1x1 (branch2a) and on branch1, global average pool, fc1000 (Keras [in, out]).
Weights come from an LWTS file (layout in native/engine/include/loupe/weights.h), so Loupe and this
peer run exactly the same numbers.

Subcommands (each writes JSON; every measurement is appended as soon as it exists, so a run killed by
a timeout keeps what it measured):
  bench     eager and CUDA-graph throughput, fp32 (no TF32) / bf16 / fp16, channels_last
  compile   torch.compile(mode=reduce-overhead) throughput (slow to compile: run it time-boxed)
  verify    fp32 logits / top-1 on the reference images (needs real weights + the reference folder)
  roofline  device-to-device copy bandwidth and 8192^3 matmul TFLOP/s (bf16, fp16, fp32 without TF32)
  costs     ResNet-50 FLOPs and bytes per image, counted from the architecture
  report    merge Loupe's and this peer's results into results.json + table.md (no torch needed)
"""
import argparse
import glob
import json
import math
import os
import struct
import sys
import time

# ----------------------------------------------------------------------------------------------
# Architecture (mirrors MakeSpecs in native/engine/src/resnet50.cc)
# ----------------------------------------------------------------------------------------------
BN_EPS = 1e-3
STAGE_BLOCKS = (3, 4, 6, 3)
STAGE_WIDTH = (64, 128, 256, 512)


def conv_specs():
    """[(conv name, bn name, role, block, k, cin, cout, stride, pad)] in Loupe's order."""
    v = [("conv1", "bn_conv1", "stem", -1, 7, 3, 64, 2, 3)]
    cin, block = 64, 0
    for s in range(4):
        for b in range(STAGE_BLOCKS[s]):
            i = "%d%s" % (s + 2, chr(ord("a") + b))
            stride = 2 if (b == 0 and s > 0) else 1
            w, out = STAGE_WIDTH[s], 4 * STAGE_WIDTH[s]
            v.append(("res%s_branch2a" % i, "bn%s_branch2a" % i, "a", block, 1, cin, w, stride, 0))
            v.append(("res%s_branch2b" % i, "bn%s_branch2b" % i, "b", block, 3, w, w, 1, 1))
            v.append(("res%s_branch2c" % i, "bn%s_branch2c" % i, "c", block, 1, w, out, 1, 0))
            if b == 0:
                v.append(("res%s_branch1" % i, "bn%s_branch1" % i, "proj", block, 1, cin, out, stride, 0))
            cin = out
            block += 1
    return v


def resnet50_costs(act_bytes=4, weight_bytes=None, fc_bytes=4):
    """FLOPs (2 per multiply-add) and minimal memory traffic per image, counted layer by layer.

    bytes: every layer reads its inputs and writes its output once (conv: x + y, residual add: + z,
    maxpool: in + out, avgpool: in), weights once per batch; the input image is read as fp32."""
    h = w = 224
    flops = 0
    act = 224 * 224 * 3 * 4  # fp32 input image read
    weights = 0
    wb = act_bytes if weight_bytes is None else weight_bytes
    shapes = {}
    for name, _, role, block, k, cin, cout, stride, pad in conv_specs():
        if role == "stem":
            hi, wi = 224, 224
        elif role == "a":
            hi, wi = shapes["block_in"]
            shapes["this_block_in"] = (hi, wi)
        elif role == "proj":  # listed after branch2c, but reads the block's input
            hi, wi = shapes["this_block_in"]
        else:
            hi, wi = shapes["prev"]
        ho = (hi + 2 * pad - k) // stride + 1
        wo = (wi + 2 * pad - k) // stride + 1
        flops += 2 * k * k * cin * cout * ho * wo
        weights += (k * k * cin * cout + cout) * wb
        act += (hi * wi * cin + ho * wo * cout) * act_bytes
        if role == "c":
            act += ho * wo * cout * act_bytes  # residual read
        if role == "stem":
            # maxpool 3x3/2 pad 1 reads conv1's output, writes 56x56x64
            ph, pw = (ho + 2 - 3) // 2 + 1, (wo + 2 - 3) // 2 + 1
            act += (ho * wo * cout + ph * pw * cout) * act_bytes
            shapes["block_in"] = (ph, pw)
            shapes["prev"] = (ph, pw)
        elif role in ("a", "b"):
            shapes["prev"] = (ho, wo)
        elif role == "c":
            shapes["block_in"] = (ho, wo)
            shapes["prev"] = (ho, wo)
        h, w = ho, wo
    act += 7 * 7 * 2048 * act_bytes  # global average pool read
    flops += 2 * 2048 * 1000
    weights += (2048 * 1000 + 1000) * fc_bytes
    return {"flops_per_image": flops, "activation_bytes_per_image": act, "weight_bytes": weights}


# ----------------------------------------------------------------------------------------------
# LWTS reader (numpy only)
# ----------------------------------------------------------------------------------------------
def read_lwts(path):
    import numpy as np

    with open(path, "rb") as f:
        b = f.read()
    if b[:4] != b"LWTS":
        raise ValueError("%s: not an LWTS file" % path)
    ver, n = struct.unpack_from("<IQ", b, 4)
    if ver != 1:
        raise ValueError("%s: LWTS version %d (expected 1)" % (path, ver))
    o = 16
    w = {}
    for _ in range(n):
        (L,) = struct.unpack_from("<I", b, o)
        name = b[o + 4 : o + 4 + L].decode("utf-8")
        o += 4 + L
        (R,) = struct.unpack_from("<I", b, o)
        dims = struct.unpack_from("<%dq" % R, b, o + 4)
        o += 4 + 8 * R
        (dt,) = struct.unpack_from("<I", b, o)
        o += 4
        if dt not in (0, 1):
            raise ValueError("%s: tensor %s has unknown dtype %d" % (path, name, dt))
        t = np.dtype("<f4" if dt == 0 else "<f2")
        cnt = int(np.prod(dims)) if R else 1
        if o + cnt * t.itemsize > len(b):
            raise ValueError("%s: truncated in tensor %s" % (path, name))
        w[name] = np.frombuffer(b, t, cnt, o).reshape(dims).astype(np.float32)
        o += cnt * t.itemsize
    if o != len(b):
        raise ValueError("%s: %d trailing bytes" % (path, len(b) - o))
    return w


# ----------------------------------------------------------------------------------------------
# The PyTorch model
# ----------------------------------------------------------------------------------------------
def build_model(weights, fold=True):
    import numpy as np
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    def make_conv(spec):
        name, bn, _, _, k, cin, cout, stride, pad = spec
        kern = weights[name + "/kernel"].astype(np.float64)  # HWIO
        bias = weights[name + "/bias"].astype(np.float64)
        assert kern.shape == (k, k, cin, cout), (name, kern.shape)
        g, be = weights[bn + "/gamma"].astype(np.float64), weights[bn + "/beta"].astype(np.float64)
        mu, var = weights[bn + "/moving_mean"].astype(np.float64), weights[bn + "/moving_variance"].astype(np.float64)
        conv = nn.Conv2d(cin, cout, k, stride=stride, padding=pad, bias=True)
        if fold:
            scale = g / np.sqrt(var + BN_EPS)
            wk = kern * scale  # broadcast over cout (last axis)
            bk = (bias - mu) * scale + be
            conv.weight.data = torch.from_numpy(wk.transpose(3, 2, 0, 1).astype(np.float32).copy())
            conv.bias.data = torch.from_numpy(bk.astype(np.float32))
            return conv
        conv.weight.data = torch.from_numpy(kern.transpose(3, 2, 0, 1).astype(np.float32).copy())
        conv.bias.data = torch.from_numpy(bias.astype(np.float32))
        bnm = nn.BatchNorm2d(cout, eps=BN_EPS)
        bnm.weight.data = torch.from_numpy(g.astype(np.float32))
        bnm.bias.data = torch.from_numpy(be.astype(np.float32))
        bnm.running_mean.data = torch.from_numpy(mu.astype(np.float32))
        bnm.running_var.data = torch.from_numpy(var.astype(np.float32))
        return nn.Sequential(conv, bnm)

    class Bottleneck(nn.Module):
        def __init__(self, a, b, c, proj):
            super().__init__()
            self.a, self.b, self.c, self.proj = a, b, c, proj

        def forward(self, x):
            y = F.relu(self.a(x))
            y = F.relu(self.b(y))
            y = self.c(y)
            s = self.proj(x) if self.proj is not None else x
            return F.relu(y + s)

    class KerasResNet50(nn.Module):
        def __init__(self):
            super().__init__()
            specs = conv_specs()
            self.pad1 = nn.ZeroPad2d(3)
            stem = list(specs[0])
            stem[8] = 0  # padding is the explicit ZeroPad2d(3)
            self.conv1 = make_conv(tuple(stem))
            self.pool_pad = nn.ZeroPad2d(1)
            self.pool = nn.MaxPool2d(3, stride=2)
            blocks = {}
            for s in specs[1:]:
                blocks.setdefault(s[3], {})[s[2]] = make_conv(s)
            self.blocks = nn.ModuleList(
                Bottleneck(blocks[i]["a"], blocks[i]["b"], blocks[i]["c"], blocks[i].get("proj"))
                for i in sorted(blocks)
            )
            self.fc = nn.Linear(2048, 1000)
            self.fc.weight.data = torch.from_numpy(weights["fc1000/kernel"].T.copy())
            self.fc.bias.data = torch.from_numpy(weights["fc1000/bias"].copy())

        def forward(self, x):  # x: [N, 3, 224, 224] (channels_last memory), caffe-preprocessed BGR
            x = F.relu(self.conv1(self.pad1(x)))
            x = self.pool(self.pool_pad(x))
            for blk in self.blocks:
                x = blk(x)
            x = x.mean(dim=(2, 3))
            return self.fc(x.float() if x.dtype != self.fc.weight.dtype else x)

    return KerasResNet50().eval()


# ----------------------------------------------------------------------------------------------
# Timing helpers
# ----------------------------------------------------------------------------------------------
def _setup_torch(precision):
    import torch

    torch.backends.cudnn.benchmark = True
    # fp32 means real fp32 (FMA), as Loupe's fp32: no TF32 anywhere.
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cuda.matmul.allow_tf32 = False
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def _median(v):
    v = sorted(v)
    n = len(v)
    return v[n // 2] if n % 2 else 0.5 * (v[n // 2 - 1] + v[n // 2])


def time_cuda(fn, iters, warmup):
    import torch

    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    times = []
    for _ in range(iters):
        a = torch.cuda.Event(enable_timing=True)
        b = torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return _median(times), min(times)


def append_jsonl(path, obj):
    line = json.dumps(obj)
    print(line, flush=True)
    if path:
        with open(path, "a") as f:
            f.write(line + "\n")


def load_model_on_gpu(args, precision, amp):
    import torch

    dtype = _setup_torch(precision)
    w = read_lwts(args.weights)
    model = build_model(w, fold=not args.no_fold).cuda().to(memory_format=torch.channels_last)
    if amp == "cast" and dtype != torch.float32:
        model = model.to(dtype)
    return model, dtype


def make_input(batch, dtype, amp):
    import torch

    g = torch.Generator(device="cuda")
    g.manual_seed(1234 + batch)
    x = torch.rand(batch, 224, 224, 3, device="cuda", generator=g) * 276.0 - 124.0  # NHWC, caffe range
    x = x.permute(0, 3, 1, 2)  # logical NCHW, channels_last memory
    if amp == "cast":
        x = x.to(dtype)
    return x.contiguous(memory_format=torch.channels_last)


def cmd_bench(args):
    import torch

    dev = torch.cuda.get_device_name(0)
    # One failure (out of memory at a batch size, a cuDNN error) costs its own row, not the rest.
    for precision in args.precisions.split(","):
        amp = args.amp if precision != "fp32" else "cast"
        try:
            model, dtype = load_model_on_gpu(args, precision, amp)
        except Exception as e:
            append_jsonl(args.json, {"peer": "torch", "mode": "eager", "precision": precision,
                                     "error": "loading the model: " + repr(e)[:400]})
            torch.cuda.empty_cache()
            continue
        for batch in [int(b) for b in args.batches.split(",")]:
            x = make_input(batch, dtype, amp)
            ctx = (lambda: torch.autocast("cuda", dtype=dtype)) if amp == "autocast" else None
            with torch.inference_mode():

                def eager():
                    if ctx:
                        with ctx():
                            return model(x)
                    return model(x)

                t0 = time.time()
                try:
                    med, mn = time_cuda(eager, args.iters, args.warmup)
                except Exception as e:
                    append_jsonl(args.json, {"peer": "torch", "mode": "eager", "precision": precision,
                                             "batch": batch, "error": repr(e)[:400]})
                    del x
                    torch.cuda.empty_cache()
                    continue
                append_jsonl(args.json, {"peer": "torch", "mode": "eager", "amp": amp, "device": dev,
                                         "precision": precision, "batch": batch, "median_ms": med,
                                         "min_ms": mn, "img_per_s": batch * 1000.0 / med,
                                         "wall_s": time.time() - t0, "torch": torch.__version__})
                if args.no_graphs:
                    continue
                try:
                    t0 = time.time()
                    s = torch.cuda.Stream()
                    s.wait_stream(torch.cuda.current_stream())
                    with torch.cuda.stream(s):
                        for _ in range(3):
                            eager()
                    torch.cuda.current_stream().wait_stream(s)
                    g = torch.cuda.CUDAGraph()
                    with torch.cuda.graph(g):
                        _y = eager()
                    med, mn = time_cuda(g.replay, args.iters, args.warmup)
                    append_jsonl(args.json, {"peer": "torch", "mode": "cuda_graph", "amp": amp, "device": dev,
                                             "precision": precision, "batch": batch, "median_ms": med,
                                             "min_ms": mn, "img_per_s": batch * 1000.0 / med,
                                             "wall_s": time.time() - t0, "torch": torch.__version__})
                    del g, _y
                except Exception as e:  # graphs are a bonus
                    append_jsonl(args.json, {"peer": "torch", "mode": "cuda_graph", "precision": precision,
                                             "batch": batch, "error": repr(e)[:400]})
            del x
            torch.cuda.empty_cache()
        del model
        torch.cuda.empty_cache()


def cmd_compile(args):
    import torch

    dev = torch.cuda.get_device_name(0)
    for precision in args.precisions.split(","):
        model, dtype = load_model_on_gpu(args, precision, "cast")
        for batch in [int(b) for b in args.batches.split(",")]:
            x = make_input(batch, dtype, "cast")
            t0 = time.time()
            try:
                torch._dynamo.reset()
                cm = torch.compile(model, mode=args.mode, dynamic=False)
                with torch.inference_mode():
                    cm(x)  # compile
                    torch.cuda.synchronize()
                    compile_s = time.time() - t0
                    med, mn = time_cuda(lambda: cm(x), args.iters, args.warmup)
                append_jsonl(args.json, {"peer": "torch", "mode": "compile:" + args.mode, "amp": "cast",
                                         "device": dev, "precision": precision, "batch": batch,
                                         "median_ms": med, "min_ms": mn, "img_per_s": batch * 1000.0 / med,
                                         "compile_s": compile_s, "torch": torch.__version__})
            except Exception as e:
                append_jsonl(args.json, {"peer": "torch", "mode": "compile:" + args.mode, "precision": precision,
                                         "batch": batch, "error": repr(e)[:600], "wall_s": time.time() - t0})


def cmd_verify(args):
    """fp32 (and bf16) logits of the reference images vs the reference JSONs (real weights only)."""
    out = {"peer": "torch", "verify": [], "weights": args.weights}
    try:
        _verify_into(args, out)
    finally:  # what was checked is kept even if a later precision fails
        if args.json:
            with open(args.json, "a") as f:
                f.write(json.dumps(out) + "\n")


def _verify_into(args, out):
    import numpy as np
    import torch
    from PIL import Image

    for precision in ("fp32", "bf16"):
        model, dtype = load_model_on_gpu(args, precision, "cast")
        for name in ("chelsea", "coffee", "rocket"):
            png = os.path.join(args.dir, name + "_224.png")
            ref = os.path.join(args.dir, name + ".json")
            if not (os.path.exists(png) and os.path.exists(ref)):
                continue
            rgb = np.asarray(Image.open(png).convert("RGB"), dtype=np.float32)
            bgr = rgb[:, :, ::-1] - np.array([103.939, 116.779, 123.68], dtype=np.float32)
            x = torch.from_numpy(bgr.copy())[None].cuda().permute(0, 3, 1, 2)
            x = x.to(dtype).contiguous(memory_format=torch.channels_last)
            with torch.inference_mode():
                logits = model(x).float().cpu().numpy()[0]
            r = json.load(open(ref))
            want = np.array(r["logits"], dtype=np.float64)
            top1 = int(np.argmax(logits))
            rec = {"precision": precision, "image": name, "top1": top1, "ref_top1": int(r["top5"][0]["index"]),
                   "max_abs_logit_diff": float(np.max(np.abs(logits - want)))}
            rec["ok"] = rec["top1"] == rec["ref_top1"]
            out["verify"].append(rec)
            print(json.dumps(rec), flush=True)
        del model


def cmd_roofline(args):
    import torch

    res = {"device": torch.cuda.get_device_name(0), "torch": torch.__version__}
    props = torch.cuda.get_device_properties(0)
    res["sm_count"] = props.multi_processor_count
    res["memory_gib"] = props.total_memory / 2**30
    # Device-to-device copy: bytes read + written.
    n = 2 << 30
    src = torch.empty(n, dtype=torch.uint8, device="cuda")
    dst = torch.empty_like(src)
    med, _ = time_cuda(lambda: dst.copy_(src), 10, 3)
    res["d2d_copy_gb_s"] = 2.0 * n / (med * 1e-3) / 1e9
    del src, dst
    torch.cuda.empty_cache()
    torch.backends.cuda.matmul.allow_tf32 = False
    m = 8192
    for name, dt in (("bf16", torch.bfloat16), ("fp16", torch.float16), ("fp32", torch.float32)):
        a = torch.randn(m, m, device="cuda", dtype=dt)
        b = torch.randn(m, m, device="cuda", dtype=dt)
        med, _ = time_cuda(lambda: torch.mm(a, b), 10, 3)
        res["matmul_%s_tflops" % name] = 2.0 * m ** 3 / (med * 1e-3) / 1e12
        del a, b
        torch.cuda.empty_cache()
    for p, ab in (("fp32", 4), ("bf16", 2), ("fp16", 2)):
        res["resnet50_" + p] = resnet50_costs(act_bytes=ab)
    print(json.dumps(res), flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(res, f, indent=1)


def cmd_costs(args):
    for p, ab in (("fp32", 4), ("bf16", 2), ("fp16", 2)):
        c = resnet50_costs(act_bytes=ab)
        print("%s: %.3f GFLOP/img, activations %.1f MB/img, weights %.1f MB" % (
            p, c["flops_per_image"] / 1e9, c["activation_bytes_per_image"] / 1e6, c["weight_bytes"] / 1e6))


# ----------------------------------------------------------------------------------------------
# Report (pure Python: works even when torch is broken)
# ----------------------------------------------------------------------------------------------
def _read_json_lines(path):
    out = []
    if not path or not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            try:
                out.append(json.loads(line))
            except ValueError:
                pass
    return out


def _read_json(path):
    if not path or not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            txt = f.read()
        try:
            return json.loads(txt)
        except ValueError:
            # a log with one JSON object on some line
            for line in reversed(txt.splitlines()):
                line = line.strip()
                if line.startswith("{"):
                    try:
                        return json.loads(line)
                    except ValueError:
                        continue
    except OSError:
        pass
    return None


def roofline_img_s(roof, precision, batch):
    if not roof:
        return None
    costs = roof.get("resnet50_" + precision) or resnet50_costs(act_bytes=4 if precision == "fp32" else 2)
    peak = roof.get("matmul_%s_tflops" % precision)
    bw = roof.get("d2d_copy_gb_s")
    if not peak or not bw:
        return None
    t_compute = batch * costs["flops_per_image"] / (peak * 1e12)
    t_memory = (costs["weight_bytes"] + batch * costs["activation_bytes_per_image"]) / (bw * 1e9)
    return batch / max(t_compute, t_memory), ("compute" if t_compute >= t_memory else "memory")


def cmd_report(args):
    res = {"generated": time.strftime("%Y-%m-%d %H:%M:%S"), "inputs": vars(args).copy()}
    res["inputs"].pop("func", None)
    res["steps"] = _read_json_lines(args.steps)
    env = _read_json(args.env)
    if env:
        res["env"] = env
    loupe = {}
    for path in sorted(glob.glob(os.path.join(args.logdir, "loupe_bench_*.json"))):
        j = _read_json(path)
        tag = os.path.basename(path)[len("loupe_bench_"):-len(".json")]
        if j:
            loupe[tag] = j
    res["loupe_bench"] = loupe
    res["loupe_gpu_stats"] = {"graphs": _read_json_lines(os.path.join(args.logdir, "stats_graphs.jsonl")),
                              "eager": _read_json_lines(os.path.join(args.logdir, "stats_eager.jsonl"))}
    torch_rows = _read_json_lines(os.path.join(args.logdir, "torch_bench.jsonl")) + \
        _read_json_lines(os.path.join(args.logdir, "torch_compile.jsonl"))
    res["torch"] = torch_rows
    res["torch_verify"] = _read_json_lines(os.path.join(args.logdir, "torch_verify.jsonl"))
    roof = _read_json(os.path.join(args.logdir, "roofline.json"))
    res["roofline"] = roof
    ml = _read_json(os.path.join(args.logdir, "ml_bench.json"))
    res["ml_bench"] = ml
    tests = {}
    tlog = os.path.join(args.logdir, "ctest.log")
    if os.path.exists(tlog):
        keep = []
        for line in open(tlog, errors="replace"):
            l = line.rstrip()
            if any(k in l for k in ("rel err", "top-1", "SKIP", "FAIL", "Passed", "Failed", "tests passed",
                                    "differ", "threads x", "auto ->", "CudaUsable", "checked against",
                                    "loaded ", "Timeout", "Not Run", "Exception")):
                keep.append(l)
        tests["lines"] = keep[:400]
    res["tests"] = tests
    costs = {p: resnet50_costs(act_bytes=4 if p == "fp32" else 2) for p in ("fp32", "bf16", "fp16")}
    res["resnet50_costs"] = costs

    # Table rows
    def loupe_e2e(prec, batch, tag="graphs"):
        j = loupe.get("%s_%s" % (prec, tag))
        if not j:
            return None
        for r in j.get("results", []):
            if r.get("batch") == batch:
                return r.get("img_per_s")
        return None

    def loupe_gpu(prec, batch, kind="graphs"):
        best = None
        for r in res["loupe_gpu_stats"][kind]:
            if r.get("precision") == prec and r.get("batch") == batch and r.get("gpu_img_per_s"):
                best = max(best or 0, r["gpu_img_per_s"])
        return best

    def torch_best(prec, batch):
        best, mode = None, None
        for r in torch_rows:
            if r.get("precision") == prec and r.get("batch") == batch and r.get("img_per_s"):
                if best is None or r["img_per_s"] > best:
                    best, mode = r["img_per_s"], r.get("mode")
        return best, mode

    batches = [int(b) for b in args.batches.split(",")]
    rows = []
    for prec in ("fp32", "bf16", "fp16"):
        for b in batches:
            le = loupe_e2e(prec, b)
            lg = loupe_gpu(prec, b)
            lge = loupe_gpu(prec, b, "eager")
            tb, tm = torch_best(prec, b)
            rl = roofline_img_s(roof, prec, b)
            rows.append({
                "precision": prec, "batch": b, "loupe_run_img_s": le, "loupe_gpu_img_s": lg,
                "loupe_gpu_eager_img_s": lge, "torch_img_s": tb, "torch_mode": tm,
                "ratio_loupe_gpu_over_torch": (lg / tb) if (lg and tb) else None,
                "roofline_img_s": rl[0] if rl else None, "roofline_bound": rl[1] if rl else None,
                "loupe_gpu_pct_of_roofline": (100.0 * lg / rl[0]) if (lg and rl) else None,
            })
    res["table"] = rows

    def f(v, fmt="%.0f"):
        return "-" if v is None else fmt % v

    md = ["# Loupe CUDA vs PyTorch, ResNet-50 (%s)" % ((roof or {}).get("device") or (env or {}).get("gpu") or "GPU"), ""]
    if roof:
        md.append("Ceilings measured here: D2D copy %.0f GB/s, matmul bf16 %.0f / fp16 %.0f / fp32 (no TF32) %.1f TFLOP/s. "
                  "ResNet-50: %.2f GFLOP/img." % (roof.get("d2d_copy_gb_s", 0), roof.get("matmul_bf16_tflops", 0),
                                                 roof.get("matmul_fp16_tflops", 0), roof.get("matmul_fp32_tflops", 0),
                                                 costs["fp32"]["flops_per_image"] / 1e9))
        md.append("")
    md.append("loupe Run = end-to-end Run() (host input copy, H2D, forward, D2H); loupe GPU = forward on the GPU "
              "(CUDA events, graphs on; eager in brackets); torch = best of eager / CUDA graph / torch.compile "
              "(GPU time, input already on the GPU); ratio = loupe GPU / torch; roofline = min(compute, memory) "
              "bound from the ceilings above.")
    md.append("")
    md.append("| precision | batch | loupe Run img/s | loupe GPU img/s (eager) | torch img/s (mode) | ratio | roofline img/s (bound) | % of roofline |")
    md.append("|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        md.append("| %s | %d | %s | %s (%s) | %s (%s) | %s | %s (%s) | %s |" % (
            r["precision"], r["batch"], f(r["loupe_run_img_s"]), f(r["loupe_gpu_img_s"]), f(r["loupe_gpu_eager_img_s"]),
            f(r["torch_img_s"]), r["torch_mode"] or "-", f(r["ratio_loupe_gpu_over_torch"], "%.2f"),
            f(r["roofline_img_s"]), r["roofline_bound"] or "-", f(r["loupe_gpu_pct_of_roofline"], "%.1f%%")))
    failed_steps = [s for s in res["steps"] if s.get("rc") not in (0, None)]
    md.append("")
    md.append("Steps: %d run, %d failed%s." % (len(res["steps"]), len(failed_steps),
              (": " + ", ".join("%s (rc %s)" % (s.get("step"), s.get("rc")) for s in failed_steps)) if failed_steps else ""))
    res["markdown"] = "\n".join(md)
    with open(args.out_json, "w") as fjs:
        json.dump(res, fjs, indent=1, default=str)
    with open(args.out_md, "w") as fmd:
        fmd.write(res["markdown"] + "\n")
    print(res["markdown"])


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)

    def common(p):
        p.add_argument("--weights", required=True, help="LWTS file (loupe_engine_bench --dump-lwts)")
        p.add_argument("--no-fold", action="store_true", help="keep BatchNorm2d layers (eps 1e-3)")
        p.add_argument("--json", default="", help="append results (JSON lines) to this file")

    p = sub.add_parser("bench")
    common(p)
    p.add_argument("--precisions", default="bf16,fp16,fp32")  # the headline (bf16) first
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--amp", choices=("cast", "autocast"), default="cast",
                   help="cast: model + input in bf16/fp16 (like Loupe's storage); autocast: fp32 model under autocast")
    p.add_argument("--no-graphs", action="store_true")
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("compile")
    common(p)
    p.add_argument("--precisions", default="bf16")
    p.add_argument("--batches", default="256,32,1")
    p.add_argument("--iters", type=int, default=20)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--mode", default="reduce-overhead")
    p.set_defaults(func=cmd_compile)

    p = sub.add_parser("verify")
    common(p)
    p.add_argument("--dir", required=True, help="folder with chelsea/coffee/rocket _224.png + .json")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("roofline")
    p.add_argument("--json", default="")
    p.set_defaults(func=cmd_roofline)

    p = sub.add_parser("costs")
    p.set_defaults(func=cmd_costs)

    p = sub.add_parser("report")
    p.add_argument("--logdir", required=True)
    p.add_argument("--steps", default="")
    p.add_argument("--env", default="")
    p.add_argument("--batches", default="1,32,256")
    p.add_argument("--out-json", required=True)
    p.add_argument("--out-md", required=True)
    p.set_defaults(func=cmd_report)

    args = ap.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
