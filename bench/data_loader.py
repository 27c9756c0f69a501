"""Packed-dataset loader: images/s of the streamed training loader, memory of a long read
through a small shard cache, and whether the loader keeps up with a supernet step at 224².

Everything runs on this machine with synthetic, deterministic JPEGs (smooth colour
gradients and waves plus pixel noise, a few classes): about 40x40 pixels for the 32² case,
256x320 (landscape and portrait alternating) for the 224² case. They are packed with
``hurricane.data.packed.pack`` into a temporary directory and into a bucket of a ``moto_server``
(a real S3-protocol server process, started here and stopped at the end).

1. **Throughput**: ``StreamSplit.train_batches`` (augmentation and flip on, ``--batch``
   images a batch) at 32² and 224², from the directory and from moto, with 0, 1 and 2
   DataLoader workers. Each measurement builds a fresh ``StreamSplit`` (moto: an empty cache
   directory, so the cache is cold) and takes one warm-up batch before the clock starts:
   ``startup_s`` is creating the iterator up to the first batch (worker start-up, the first
   shards' checksums or downloads), reported apart from ``images_per_s`` (the next
   ``--batches``/``--batches-224`` batches); ``images_per_s_with_startup`` counts both.
   Downloads are counted by wrapping ``S3Store.get_file`` (workers inherit the wrapper).
2. **Memory**: a fresh Python process reads batches at 224² through ``StreamSplit`` from
   moto with a small shard cache (``--rss-cache-mb``), once from a set at least 20x the
   cache (``--rss-set-mb``) and once from a set a quarter of that size, the same number of
   batches each (default: one epoch of the large set); each reports its peak RSS
   (``ru_maxrss`` of itself and of its largest loader worker), the peak bytes seen in the
   cache directory (sampled every 10 ms) and its downloads. Goal: RSS independent of the
   dataset's size.
3. **Trainer**: SGD steps of a ``Supernet`` over the full op pool at 224² (the default
   backbone, ``--train-backbone``) on a fixed batch, single paths sampled as ``stage1``
   does; ``loader_keeps_up`` = the best loader images/s at 224² >= the trainer's images/s.
   Loader and trainer are measured apart; in training they share the machine's cores.

    python bench/data_loader.py --out bench/results/data_loader.json
    python bench/data_loader.py --quick            # a smoke run (about a minute)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import torch
from _results import emit

from hurricane.data.batching import IMAGENET_MEAN, IMAGENET_STD
from hurricane.data.packed import PackedIndex, load_index, pack
from hurricane.data.stream import StreamSplit

MB = 1 << 20
BUCKET = "hurricane-bench"
ACCESS, SECRET = "bench-access", "bench-secret-key"
SOURCE_SIZE = {32: (40, 40), 224: (320, 256)}  # (width, height) of the generated JPEGs
T0 = time.monotonic()

QUICK = {"classes": 4, "images_32": 300, "images_224": 150, "batch": 16, "batches": 6,
         "batches_224": 3, "shard_mb": 0.25, "rss_set_mb": 8.0, "rss_cache_mb": 1.0,
         "rss_shard_mb": 0.125, "rss_batches": 0, "train_batch": 4, "train_steps": 2}


def log(msg: str) -> None:
    print(f"[data_loader {time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


# ----- synthetic images ----------------------------------------------------------------------

def synth_jpeg(seed: int, cls: int, k: int, width: int, height: int, classes: int) -> bytes:
    """A deterministic, compressible JPEG: a class-tinted gradient, a wave, pixel noise."""
    from PIL import Image

    tint = np.random.default_rng([seed, cls]).integers(0, 256, 3).astype(np.float32)
    rng = np.random.default_rng([seed, cls, k])
    if k % 2 and width != height:
        width, height = height, width  # portrait and landscape alternate
    cols = rng.integers(0, 256, (2, 3)).astype(np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    fx, fy, phase = rng.uniform(1, 4, 3)
    wave = 0.5 + 0.5 * np.sin(2 * np.pi * (fx * x + fy * y) + phase)
    base = (cols[0] * (1 - x) + cols[1] * y + tint * wave) / 2
    noise = rng.integers(-8, 9, (height, width, 3), dtype=np.int16)
    img = np.clip(base + noise, 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=90)
    return buf.getvalue()


def make_images(root: Path, *, size: int, classes: int, seed: int, count: int | None = None,
                min_bytes: int | None = None) -> list[Path]:
    """``root/class<c>/<k>.jpg``, classes in turn, until ``count`` images or ``min_bytes``."""
    width, height = SOURCE_SIZE[size]
    for c in range(classes):
        (root / f"class{c}").mkdir(parents=True, exist_ok=True)
    files: list[Path] = []
    total = k = 0
    while (count is not None and k < count) or (min_bytes is not None and total < min_bytes):
        c = k % classes
        data = synth_jpeg(seed, c, k // classes, width, height, classes)
        f = root / f"class{c}" / f"{k // classes:06d}.jpg"
        f.write_bytes(data)
        files.append(f)
        total += len(data)
        k += 1
    return files


def link_subset(files: list[Path], src: Path, dest: Path, min_bytes: int) -> int:
    """Hard links of the first ``files`` (same relative paths) until ``min_bytes``; images."""
    total = n = 0
    for f in files:
        if total >= min_bytes:
            break
        to = dest / f.relative_to(src)
        to.parent.mkdir(parents=True, exist_ok=True)
        os.link(f, to)
        total += f.stat().st_size
        n += 1
    return n


def set_info(index: PackedIndex, image_dir: Path) -> dict[str, Any]:
    files = [f for f in image_dir.rglob("*.jpg")]
    train = [s for s in index.shards if s.split == "train"]
    return {"images": len(files), "image_bytes": sum(f.stat().st_size for f in files),
            "packed_bytes": sum(s.bytes for s in index.shards),
            "train_images": int(index.indices("train").size),
            "train_bytes": sum(s.bytes for s in train), "train_shards": len(train),
            "shards": len(index.shards), "shard_bytes": index.meta.get("shard_bytes")}


# ----- download counting ---------------------------------------------------------------------

_DOWNLOAD_LOG: Path | None = None


def count_downloads() -> None:
    """Wraps ``S3Store.get_file`` to append ``key bytes`` to ``_DOWNLOAD_LOG`` per download
    (an O_APPEND line per call: loader workers forked later write to the same file)."""
    from hurricane.storage.s3store import S3Store

    orig = S3Store.get_file

    def get_file(self: S3Store, key: str, path: str | Path) -> None:
        orig(self, key, path)
        if _DOWNLOAD_LOG is not None:
            with _DOWNLOAD_LOG.open("a") as f:
                f.write(f"{key} {Path(path).stat().st_size}\n")

    setattr(S3Store, "get_file", get_file)  # noqa: B010


def downloads(path: Path) -> tuple[int, int]:
    """(downloads, bytes) logged so far."""
    if not path.exists():
        return 0, 0
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    return len(rows), sum(int(r[1]) for r in rows)


# ----- 1. throughput ------------------------------------------------------------------------

def close(it: Iterator[Any]) -> None:
    stop = getattr(it, "close", None)
    if stop is not None:
        stop()


def measure_stream(source: str, *, size: int, workers: int, batch: int, batches: int,
                   work: Path, window: int | None) -> dict[str, Any]:
    global _DOWNLOAD_LOG
    index = load_index(source)
    remote = source.startswith("s3://")
    cache_dir = Path(tempfile.mkdtemp(prefix="cache-", dir=work))  # empty: a cold cache
    dl_log = cache_dir.parent / f"{cache_dir.name}.downloads"
    _DOWNLOAD_LOG = dl_log
    split = StreamSplit(index, index.indices("train"), input_size=size, mean=IMAGENET_MEAN,
                        std=IMAGENET_STD, augment=True, flip=True, workers=workers,
                        window=window, cache_dir=cache_dir, cache_bytes=1 << 40)
    t0 = time.perf_counter()
    it = split.train_batches(batch, seed=0)
    try:
        x, y = next(it)  # warm-up: worker start-up, the first shards' downloads or checksums
        t1 = time.perf_counter()
        if tuple(x.shape) != (min(batch, len(split)), 3, size, size):
            raise RuntimeError(f"unexpected batch shape {tuple(x.shape)}")
        startup_dl = downloads(dl_log)
        images = 0
        for _ in range(batches):
            x, y = next(it)
            images += len(y)
        t2 = time.perf_counter()
    finally:
        t_close = time.perf_counter()
        close(it)
        shutdown = time.perf_counter() - t_close
        _DOWNLOAD_LOG = None
    total_dl = downloads(dl_log)
    out: dict[str, Any] = {
        "size": size, "source": "s3" if remote else "local", "workers": workers,
        "batch": batch, "batches": batches, "images": images,
        "seconds": t2 - t1, "images_per_s": images / (t2 - t1),
        "startup_s": t1 - t0,
        "images_per_s_with_startup": (images + batch) / (t2 - t0),
        "shutdown_s": shutdown, "window": split.window,
        "main_torch_threads": torch.get_num_threads(),
        "train_shards": len([s for s in index.shards if s.split == "train"]),
    }
    if remote:
        out.update(shard_downloads=total_dl[0], shard_downloads_in_startup=startup_dl[0],
                   downloaded_bytes=total_dl[1])
    return out


# ----- 2. memory (a child process) ----------------------------------------------------------

def dir_bytes(d: Path) -> int:
    """Bytes of the shard files (and downloads in progress) in a cache directory."""
    total = 0
    with contextlib.suppress(FileNotFoundError):
        for f in d.iterdir():  # shards, partial downloads; not the lock folder
            with contextlib.suppress(FileNotFoundError):
                st = f.lstat()
                total += st.st_size if not f.is_dir() else 0
    return total


def rss_child(cfg: dict[str, Any]) -> None:
    """Runs in a fresh process: reads ``batches`` batches, prints one JSON line."""
    global _DOWNLOAD_LOG
    count_downloads()
    cache_dir = Path(cfg["cache_dir"])
    cache_dir.mkdir(parents=True, exist_ok=True)
    _DOWNLOAD_LOG = Path(cfg["download_log"])
    index = load_index(cfg["source"])
    split = StreamSplit(index, index.indices("train"), input_size=cfg["size"],
                        mean=IMAGENET_MEAN, std=IMAGENET_STD, augment=True, flip=True,
                        workers=cfg["workers"], window=cfg["window"], cache_dir=cache_dir,
                        cache_bytes=cfg["cache_bytes"])
    batches = cfg["batches"] or split.steps_per_epoch(cfg["batch"])
    setup_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    peak = [0]
    done = threading.Event()

    def watch() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], dir_bytes(cache_dir))
            time.sleep(0.01)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    t0 = time.perf_counter()
    it = split.train_batches(cfg["batch"], seed=0)
    images = 0
    checksum = 0.0
    try:
        for _ in range(batches):
            x, y = next(it)
            images += len(y)
            checksum += float(x.mean())  # touch the batch, as a model would
    finally:
        close(it)  # joins (reaps) the workers: RUSAGE_CHILDREN then includes them
    seconds = time.perf_counter() - t0
    done.set()
    watcher.join()
    peak[0] = max(peak[0], dir_bytes(cache_dir))
    dl = downloads(_DOWNLOAD_LOG)
    kib = 1024  # ru_maxrss is in KiB on Linux
    print(json.dumps({
        "batches": batches, "images_read": images, "seconds": seconds,
        "images_per_s": images / seconds, "window": split.window,
        "rss_after_setup_mb": setup_rss * kib / MB,
        "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * kib / MB,
        "worker_rss_peak_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * kib / MB,
        "peak_cache_dir_bytes": peak[0], "final_cache_dir_bytes": dir_bytes(cache_dir),
        "shard_downloads": dl[0], "downloaded_bytes": dl[1], "checksum": checksum}))


def run_rss_child(cfg: dict[str, Any], timeout: float) -> dict[str, Any]:
    """The child's JSON, or ``{"error": its last error line}`` when it failed (recorded,
    not raised: a failing read is a finding of this benchmark)."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--rss-child", json.dumps(cfg)]
    r = subprocess.run(cmd, capture_output=True, timeout=timeout, check=False, text=True)
    if r.stderr:
        sys.stderr.write(r.stderr)
    if r.returncode != 0:
        lines = [ln for ln in r.stderr.splitlines() if "Error" in ln] or r.stderr.splitlines()
        return {"error": f"exit status {r.returncode}: "
                         f"{lines[-1] if lines else 'no output'}"}
    return json.loads(r.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


# ----- 3. trainer ---------------------------------------------------------------------------

def measure_trainer(*, backbone: str, batch: int, steps: int, warmup: int, classes: int,
                    threads: int) -> dict[str, Any]:
    from hurricane.nets.arch import SearchSpace
    from hurricane.nets.backbone import Layout
    from hurricane.nets.oppool import OPS
    from hurricane.nets.supernet import Supernet
    from hurricane.nets.train import param_groups, step_seed
    from hurricane.runs.steps import path_sampler
    from hurricane.spec import BackboneSpec, SupernetTrainSpec

    torch.set_num_threads(threads)
    shape: dict[str, Any] = {}
    if backbone == "small":  # bench/supernet_step.py's backbone
        shape = {"layers_per_stage": (2, 2, 4, 2), "stage_channels": (32, 64, 128, 256),
                 "stem_channels": 16, "head_channels": 512}
    bb = BackboneSpec(input_size=224, num_classes=classes, **shape)
    sup = SupernetTrainSpec()
    layout = Layout.from_spec(bb)
    space = SearchSpace.uniform(OPS.names(), layout.num_layers)  # the pool space, all ops
    torch.manual_seed(0)
    net = Supernet(layout, space, sharing=sup.sharing)
    forward = path_sampler(space, 0)
    opt = torch.optim.SGD(param_groups(net, sup.weight_decay), lr=0.05, momentum=sup.momentum)
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=sup.label_smoothing)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, 224, 224, generator=g)
    y = torch.randint(0, classes, (batch,), generator=g)
    net.train()
    times = []
    for step in range(warmup + steps):
        t = time.perf_counter()
        torch.manual_seed(step_seed(0, step, 1))
        loss = loss_fn(forward(net, x, step), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t
        log(f"trainer step {step} ({'warm-up' if step < warmup else 'timed'}): {dt:.2f} s")
        if step >= warmup:
            times.append(dt)
    out = {"backbone": backbone, "input": 224, "batch": batch, "steps": steps,
           "warmup_steps": warmup, "threads": threads, "layers": layout.num_layers,
           "ops_per_layer": len(OPS), "sharing": sup.sharing,
           "layers_per_stage": list(bb.layers_per_stage),
           "stage_channels": list(bb.stage_channels),
           "supernet_params": sum(p.numel() for p in net.parameters()),
           "step_s": times, "step_s_median": statistics.median(times),
           "images_per_s": batch * len(times) / sum(times),
           "rss_peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB}
    del net, opt
    return out


# ----- main ---------------------------------------------------------------------------------

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a smoke run: tiny sets, few batches "
                    f"(defaults become {QUICK}; options given explicitly still win)")
    ap.add_argument("--sizes", default="32,224", help="input sides measured (of 32, 224)")
    ap.add_argument("--sources", default="local,s3", help="local, s3 or both")
    ap.add_argument("--workers", default="0,1,2", help="loader worker counts measured")
    ap.add_argument("--classes", type=int, default=4)
    ap.add_argument("--images-32", type=int, default=4000, help="images of the 32² set")
    ap.add_argument("--images-224", type=int, default=2500, help="images of the 224² set")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--batches", type=int, default=50, help="timed batches at 32²")
    ap.add_argument("--batches-224", type=int, default=30, help="timed batches at 224²")
    ap.add_argument("--shard-mb", type=float, default=4.0, help="shard size of the throughput sets")
    ap.add_argument("--window", type=int, default=None,
                    help="StreamSplit shuffle window in shards (default: the library's, ~1 GiB)")
    ap.add_argument("--loader-threads", type=int, default=0,
                    help="torch threads of the measuring process (workers=0 runs the loader's "
                    "tensor ops there; workers set 1 each); 0: torch's default, all cores, as "
                    "training sets")
    ap.add_argument("--rss-set-mb", type=float, default=200.0,
                    help="JPEG bytes of the large memory-test set (the small one: a quarter)")
    ap.add_argument("--rss-cache-mb", type=float, default=8.0, help="shard cache of the memory test")
    ap.add_argument("--rss-shard-mb", type=float, default=1.0, help="shard size of the memory test")
    ap.add_argument("--rss-window", type=int, default=None, help="shuffle window of the memory "
                    "test in shards (default: half the cache's worth; 0: the library's default)")
    ap.add_argument("--rss-workers", type=int, default=2)
    ap.add_argument("--rss-batches", type=int, default=0,
                    help="batches each memory child reads (0: one epoch of the large set)")
    ap.add_argument("--train-backbone", choices=("default", "small"), default="default",
                    help="default: BackboneSpec's defaults (4,4,8,4 layers, 64..640 channels); "
                    "small: bench/supernet_step.py's")
    ap.add_argument("--train-batch", type=int, default=64)
    ap.add_argument("--train-steps", type=int, default=5, help="timed SGD steps")
    ap.add_argument("--train-warmup", type=int, default=1)
    ap.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                    help="torch threads of the trainer (training uses all cores by default)")
    ap.add_argument("--skip", default="", help="parts to leave out: throughput,rss,trainer")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--tmp", type=Path, default=None, help="where the temporary sets go")
    ap.add_argument("--out", type=Path)
    ap.add_argument("--rss-child", help=argparse.SUPPRESS)
    first, _ = ap.parse_known_args(argv)
    if first.quick:
        ap.set_defaults(**QUICK)
    return ap.parse_args(argv)


def ints(text: str) -> list[int]:
    return [int(t) for t in text.split(",") if t.strip()]


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.rss_child:
        rss_child(json.loads(args.rss_child))
        return
    from hurricane.machine import machine_info
    from hurricane.settings import get_settings
    from tests.servers import MotoServer

    sizes, workers = ints(args.sizes), ints(args.workers)
    sources = [s.strip() for s in args.sources.split(",") if s.strip()]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    bad = [s for s in sizes if s not in SOURCE_SIZE] + [s for s in sources if s not in ("local", "s3")]
    if bad:
        raise SystemExit(f"unknown sizes/sources {bad}: sizes are 32, 224; sources local, s3")
    count_downloads()
    result: dict[str, Any] = {
        "bench": "data_loader",
        "command": "python bench/data_loader.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": {**machine_info("torch", "pillow", "numpy", "moto", "minio"),
                    "torch_threads": torch.get_num_threads()},
        "config": {k: v for k, v in vars(args).items() if k not in ("out", "rss_child", "tmp")},
    }
    need_s3 = ("s3" in sources and "throughput" not in skip) or "rss" not in skip
    with contextlib.ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hurricane-bench-",
                                                                    dir=args.tmp)))
        if need_s3:
            moto = MotoServer(log=work / "moto.log")
            log("starting moto_server")
            stack.enter_context(moto)  # stopped when the block ends, whatever happens
            env = {"HURRICANE_S3_ENDPOINT": moto.endpoint, "HURRICANE_S3_ACCESS_KEY": ACCESS,
                   "HURRICANE_S3_SECRET_KEY": SECRET, "HURRICANE_STORE_RETRY_S": "30"}
            os.environ.update(env)
            get_settings.cache_clear()
            stack.callback(get_settings.cache_clear)
            result["moto_endpoint"] = moto.endpoint
        if "throughput" not in skip:
            if args.loader_threads:
                torch.set_num_threads(args.loader_threads)
            result.update(throughput_part(args, work, sizes, sources, workers))
        if "rss" not in skip:
            result["rss"] = rss_part(args, work)
    if "trainer" not in skip:
        log(f"trainer: supernet ({args.train_backbone} backbone) at 224², batch "
            f"{args.train_batch}, {args.train_warmup}+{args.train_steps} steps")
        result["trainer"] = measure_trainer(
            backbone=args.train_backbone, batch=args.train_batch, steps=args.train_steps,
            warmup=args.train_warmup, classes=1000, threads=args.threads)
    if "trainer" in result and "throughput" in result:
        at224 = [r for r in result["throughput"] if r["size"] == 224]
        if at224:
            best = max(at224, key=lambda r: r["images_per_s"])
            need = result["trainer"]["images_per_s"]
            w0 = [r["images_per_s"] for r in at224 if r["workers"] == 0]
            result["best_loader_224"] = {k: best[k] for k in ("source", "workers",
                                                               "images_per_s")}
            result["trainer_images_per_s"] = need
            result["loader_keeps_up"] = best["images_per_s"] >= need
            if w0:  # how busy an in-process (workers=0) loader would be at the trainer's rate
                result["loader_busy_fraction_at_trainer_rate"] = need / max(w0)
    result["notes"] = [
        "images_per_s: the timed batches after one warm-up batch; startup_s (creating the "
        "iterator up to the first batch: DataLoader worker start-up plus, from a cold cache, "
        "the first batch's shard downloads or, from a directory, first-open sha256 checks) "
        "is reported apart; images_per_s_with_startup includes it",
        "with workers, batches other workers made while the first one was waited for count "
        "in the timed part (up to workers*prefetch_factor - 1 batches ahead)",
        "s3 throughput runs use an unbounded cache (1 TiB): shard_downloads = shards fetched; "
        "with the library's default window (~1 GiB) a small set is one window, so the first "
        "batches fetch most shards",
        "loader and trainer are measured apart; in training they share the cores",
        "ru_maxrss counts shared pages too (a forked worker's RSS includes the parent's "
        "pages it touched)",
    ]
    emit(result, args.out)


def throughput_part(args: argparse.Namespace, work: Path, sizes: list[int], sources: list[str],
                    workers: list[int]) -> dict[str, Any]:
    sets: dict[str, Any] = {}
    runs: list[dict[str, Any]] = []
    for size in sizes:
        n = args.images_32 if size == 32 else args.images_224
        img_dir = work / f"images-{size}"
        log(f"generating {n} JPEGs of {SOURCE_SIZE[size][0]}x{SOURCE_SIZE[size][1]} for {size}²")
        make_images(img_dir, size=size, classes=args.classes, seed=args.seed, count=n)
        shard = max(1 << 16, int(args.shard_mb * MB))
        where = {"local": str(work / f"packed-{size}"), "s3": f"s3://{BUCKET}/data-{size}"}
        info: dict[str, Any] = {}
        for src in sources:
            t = time.perf_counter()
            idx = pack(img_dir, where[src], shard_bytes=shard, val_fraction=0.1,
                       test_fraction=0.1, seed=args.seed)
            log(f"packed {size}² set to {src} in {time.perf_counter() - t:.1f} s")
            if not info:
                info = {**set_info(idx, img_dir), "source_image": list(SOURCE_SIZE[size])}
            info[f"pack_s_{src}"] = time.perf_counter() - t
        sets[str(size)] = info
        for src in sources:
            for w in workers:
                nb = args.batches if size == 32 else args.batches_224
                r = measure_stream(where[src], size=size, workers=w, batch=args.batch,
                                   batches=nb, work=work, window=args.window)
                runs.append(r)
                log(f"{size}² {src:5s} workers={w}: {r['images_per_s']:8.1f} images/s "
                    f"(startup {r['startup_s']:.2f} s"
                    + (f", {r['shard_downloads']} downloads" if src == "s3" else "") + ")")
    table: dict[str, dict[str, dict[str, float]]] = {}
    for r in runs:
        table.setdefault(str(r["size"]), {}).setdefault(r["source"], {})[str(r["workers"])] = \
            round(r["images_per_s"], 1)
    return {"datasets": sets, "throughput": runs, "images_per_s": table}


def rss_part(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    cache = max(1 << 16, int(args.rss_cache_mb * MB))
    shard = max(1 << 16, int(args.rss_shard_mb * MB))
    big_bytes = int(args.rss_set_mb * MB)
    window = args.rss_window
    if window is None:
        window = max(1, cache // (2 * shard))
    big_dir, small_dir = work / "rss-big", work / "rss-small"
    log(f"generating >= {big_bytes / MB:.1f} MB of 224² JPEGs for the memory test")
    files = make_images(big_dir, size=224, classes=args.classes, seed=args.seed + 1,
                        min_bytes=big_bytes)
    link_subset(files, big_dir, small_dir, big_bytes // 4)
    out: dict[str, Any] = {"cache_bytes": cache, "shard_bytes": shard,
                           "window_shards": window or "library default",
                           "workers": args.rss_workers, "batch": args.batch}
    sets = {}
    for name, d in (("big", big_dir), ("small", small_dir)):
        url = f"s3://{BUCKET}/rss-{name}"
        t = time.perf_counter()
        idx = pack(d, url, shard_bytes=shard, val_fraction=0.02, test_fraction=0.02,
                   seed=args.seed)
        sets[name] = (url, idx)
        out[name] = {**set_info(idx, d), "pack_s": time.perf_counter() - t}
        log(f"packed the {name} memory-test set ({out[name]['packed_bytes'] / MB:.1f} MB) "
            f"to moto in {out[name]['pack_s']:.1f} s")
    big_idx = sets["big"][1]
    batches = args.rss_batches or max(1, int(big_idx.indices("train").size) // args.batch)
    out["batches"] = batches
    for name in ("big", "small"):
        cfg = {"source": sets[name][0], "size": 224, "batch": args.batch, "batches": batches,
               "workers": args.rss_workers, "window": window or None,
               "cache_dir": str(work / f"rss-cache-{name}"), "cache_bytes": cache,
               "download_log": str(work / f"rss-{name}.downloads")}
        log(f"memory child: {batches} batches from the {name} set, cache {cache / MB:.2f} MB")
        got = run_rss_child(cfg, timeout=1800)
        out[name].update(got)
        if "error" in got:
            log(f"  {name}: the child failed: {got['error']}")
            continue
        log(f"  {name}: peak RSS {got['rss_peak_mb']:.0f} MB (worker {got['worker_rss_peak_mb']:.0f}"
            f" MB), cache dir peak {got['peak_cache_dir_bytes'] / MB:.2f} MB, "
            f"{got['shard_downloads']} downloads, {got['images_per_s']:.0f} images/s")
    big, small = out["big"], out["small"]
    out["train_set_to_cache_ratio"] = big["train_bytes"] / cache
    if "error" in big or "error" in small:
        out["rss_independent_of_size"] = None
        return out
    out["rss_diff_mb"] = big["rss_peak_mb"] - small["rss_peak_mb"]
    out["worker_rss_diff_mb"] = big["worker_rss_peak_mb"] - small["worker_rss_peak_mb"]
    tol = max(32.0, 0.05 * small["rss_peak_mb"])
    wtol = max(32.0, 0.05 * small["worker_rss_peak_mb"])
    out["tolerance_mb"] = {"process": tol, "worker": wtol}
    out["rss_independent_of_size"] = (abs(out["rss_diff_mb"]) <= tol
                                      and abs(out["worker_rss_diff_mb"]) <= wtol)
    out["peak_cache_dir_to_cache_bytes"] = max(big["peak_cache_dir_bytes"],
                                               small["peak_cache_dir_bytes"]) / cache
    return out


if __name__ == "__main__":
    main()
