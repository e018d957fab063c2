"""Building and uploading a LoRA training zip: Tessera against `zip -0` of the same files.

For each dataset size, in one run, side by side:
- `zip -0`            : `zip -0 -q -j` of the images and .txt captions (the floor: store, no upload);
- `zip -0` + `curl`   : the same, then uploaded with `curl -F content=@…` (what a user would script);
- Tessera             : app.loras.training.build_training_zip (captions from the index, trigger put
                        first) + ReplicateClient.upload_path, streamed to the files API.
Each runs in its own process; "MB" is its peak resident memory (GNU time's %M; for zip+curl the larger
of the two). Tessera's time and "+MB" are measured in the process after its imports (a worker has them
loaded already): the seconds of the work and how far the peak rose above the memory before it. The files API is a local sink that counts and
discards what it receives, so only the client side is measured.

Usage: python bench/bench_lora.py [--sizes 500,1000,2000] [--side 384]
"""
from __future__ import annotations

import argparse
import json
import os
import random
import resource
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


class _Sink(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_POST(self) -> None:
        remaining, received = int(self.headers.get("Content-Length") or 0), 0
        while remaining:
            chunk = self.rfile.read(min(remaining, 1 << 20))
            if not chunk:
                break
            remaining -= len(chunk)
            received += len(chunk)
        body = json.dumps({"id": "f1", "size": received, "urls": {"get": "http://127.0.0.1/v1/files/f1"}}).encode()
        self.send_response(201)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def make_dataset(folder: Path, count: int, side: int) -> None:
    from PIL import Image

    folder.mkdir(parents=True)
    rng = random.Random(1)
    for number in range(count):
        # Noise compresses badly, like photos: ~side²/2 bytes of JPEG.
        image = Image.frombytes("RGB", (side, side), rng.randbytes(side * side * 3))
        image.save(folder / f"img{number:05d}.jpg", quality=85)
        (folder / f"img{number:05d}.txt").write_text(f"a photo of a cat, number {number}, outdoors", encoding="utf-8")


def child_tessera(folder: str, base_url: str, out: str) -> None:
    """Runs in a child process: build the zip as the training job does, then upload it. Prints the
    seconds of that work and the resident MB before it, since a worker has these modules loaded already."""
    from app.loras.training import build_training_zip
    from app.replicate.client import ReplicateClient, shared_tls_context

    shared_tls_context()  # the worker makes it before forking
    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    files = sorted(Path(folder).glob("*.jpg"))
    items = [(path, path.stem, path.with_suffix(".txt").read_text(encoding="utf-8")) for path in files]
    build_training_zip(items, Path(out), trigger="TOK", strip_escapes=False, convert_formats=False)
    with ReplicateClient("token", base_url) as client:
        client.upload_path(out, "training.zip", "application/zip")
    print(json.dumps({"seconds": time.perf_counter() - start, "baseline_mb": baseline}))


def peak_of(command: list[str]) -> tuple[float, float, str]:
    """(seconds, peak resident MB, stdout) of one command, the peak from GNU time's %M."""
    with tempfile.NamedTemporaryFile("r") as report:
        start = time.perf_counter()
        done = subprocess.run(["/usr/bin/time", "-q", "-f", "%M", "-o", report.name, *command], check=True,
                              stdout=subprocess.PIPE, text=True)
        elapsed = time.perf_counter() - start
        return elapsed, int(report.read().strip().splitlines()[-1]) / 1024, done.stdout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="500,1000,2000", help="dataset sizes (images)")
    parser.add_argument("--side", type=int, default=384, help="image side in pixels")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_tessera(*args.child)
        return 0

    server = ThreadingHTTPServer(("127.0.0.1", 0), _Sink)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base_url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    print(f"{'images':>7} {'data MB':>8} | {'zip -0 s':>9} {'MB':>6} | {'zip+curl s':>10} {'MB':>6} | "
          f"{'Tessera s':>9} {'+MB':>6} | {'× zip -0':>8} {'× zip+curl':>10}")
    with tempfile.TemporaryDirectory(prefix="bench-lora-") as tmp:
        for size in [int(s) for s in args.sizes.split(",")]:
            folder = Path(tmp) / f"set{size}"
            make_dataset(folder, size, args.side)
            files = sorted(str(p) for p in folder.iterdir())
            data_mb = sum(os.path.getsize(p) for p in files) / 1e6
            plain = Path(tmp) / f"plain{size}.zip"
            zip_s, zip_mb, _ = peak_of(["zip", "-0", "-q", "-j", str(plain), *files])
            plain.unlink()
            # zip -0 then curl, one shell: the peak is the larger of the two programs.
            zip2_s, zip2_mb, _ = peak_of(["zip", "-0", "-q", "-j", str(plain), *files])
            curl_s, curl_mb, _ = peak_of(["curl", "-s", "-o", "/dev/null", "-F", f"content=@{plain}",
                                       f"{base_url}/files"])
            plain.unlink()
            ours = Path(tmp) / f"ours{size}.zip"
            _, ours_mb, printed = peak_of([sys.executable, __file__, "--child", str(folder), base_url, str(ours)])
            measured = json.loads(printed)
            ours_s, ours_mb = measured["seconds"], ours_mb - measured["baseline_mb"]
            ours.unlink()
            print(f"{size:>7} {data_mb:>8.0f} | {zip_s:>9.2f} {zip_mb:>6.0f} | {zip2_s + curl_s:>10.2f} "
                  f"{max(zip2_mb, curl_mb):>6.0f} | {ours_s:>9.2f} {ours_mb:>6.0f} | {ours_s / zip_s:>8.2f} "
                  f"{ours_s / (zip2_s + curl_s):>10.2f}", flush=True)
            for path in files:
                os.unlink(path)
    server.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
