"""Convert a data set to webdataset shards (layout: shards/writer.py).

    python -m shards --source interhand|rhd|stb --root DATA_ROOT --out OUT_DIR_OR_URL
        [--splits train,val,test] [--rootnet FILE|auto|none] [--fps 5|30]
        [--shard-size 512MB] [--shard-count N] [--workers N] [--seed 0] [--strict]
        [--verify full|header|none] [--mano DIR] [--cluster ray|auto|ray://HOST:PORT] [--verify-existing]

--root may be a local path or an fsspec URL (s3://bucket/InterHand2.6M). --cluster writes the shards
as Ray tasks across a cluster's nodes (shards/cluster.py; the same bytes). Re-running the same command
after an interruption keeps the finished shards (their size and mtime as recorded, or their sha256
with --verify-existing) and writes only the rest. Skipped annotations are listed in each split's
manifest.json and summarised here; --strict turns them into errors. Each sample's json carries the
hands' MANO parameters as given ("mano", world frame) and, with --mano DIR (a folder with
MANO_RIGHT.pkl / MANO_LEFT.pkl), converted to its camera frame ("mano_cam"; shards/mano/records.py).
"""
import argparse
import re
import sys

from .cli import run_cli
from .sources import get_source
from .writer import VERIFY, convert_split

_UNITS = {"": 1, "B": 1, "K": 1 << 10, "KB": 1 << 10, "M": 1 << 20, "MB": 1 << 20, "G": 1 << 30, "GB": 1 << 30}


def parse_size(text: str) -> int:
    """'512MB', '1G', '4096' -> bytes (binary units)."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMG]?B?)\s*", text.upper())
    if not m:
        raise argparse.ArgumentTypeError(f"bad size {text!r}; use e.g. 512MB, 1GB, 4096")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def build_parser():
    p = argparse.ArgumentParser(prog="python -m shards", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--source", required=True, choices=["interhand", "rhd", "stb"])
    p.add_argument("--root", required=True, help="data set root (InterHand2.6M/, RHD's data/, STB's data/): a path or fsspec URL")
    p.add_argument("--out", required=True, help="output folder or fsspec URL; splits go to OUT/<split>/")
    p.add_argument("--splits", default=None, help="comma-separated; default: every split of the source")
    p.add_argument("--rootnet", default="auto", help="RootNet output file (one split only), 'auto' or 'none'")
    p.add_argument("--fps", type=int, choices=[5, 30], default=5, help="InterHand2.6M frame rate (RootNet file name)")
    p.add_argument("--shard-size", type=parse_size, default=parse_size("512MB"), help="approximate bytes per shard")
    p.add_argument("--shard-count", type=int, default=None, help="at most this many samples per shard")
    p.add_argument("--workers", type=int, default=None,
                   help="processes (default: all cores); with --cluster ray and no RAY_ADDRESS: the CPUs of the Ray instance started here")
    p.add_argument("--cluster", default=None, help="write the shards as Ray tasks: ray (RAY_ADDRESS or a Ray instance "
                   "started here), auto (the cluster this node joined with `ray start`) or ray://HOST:PORT")
    p.add_argument("--verify-existing", action="store_true",
                   help="check the finished shards of an earlier run by their sha256, not their recorded size and mtime")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed")
    p.add_argument("--strict", action="store_true", help="stop on the first unusable annotation or image")
    p.add_argument("--verify", choices=VERIFY, default="full", help="image check: full decode, header, none")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--mano", default=None, help="MANO model folder: also write each sample's MANO parameters in its camera frame")
    p.add_argument("--debug", action="store_true", help="a traceback instead of the one-line error")
    return p


def summary(split: str, man: dict) -> str:
    c = man["counts"]
    run = man.get("_run", {})
    lines = [f"{split}: {c['total']} samples in {sum(1 for s in man['shards'] if s['count'])} shards "
             f"(right {c['hand_type']['right']}, left {c['hand_type']['left']}, interacting {c['hand_type']['interacting']}) "
             f"from {c['annotations']} annotations; {run.get('shards_written', 0)} shards written, "
             f"{run.get('shards_kept', 0)} kept from an earlier run ({run.get('cluster', 'local')}), {run.get('seconds', 0):.1f} s "
             f"(parse {run.get('parse_s', 0):.1f} s, plan {run.get('plan_s', 0):.1f} s, write {run.get('write_s', 0):.1f} s)"]
    if c["skipped"]:
        lines.append(f"{split}: SKIPPED {c['skipped']} annotations (listed in manifest.json):")
        for kind, n in sorted(c["skipped_by_kind"].items()):
            examples = [s["reason"] for s in man["skipped"] if s["kind"] == kind][:3]
            lines.append(f"  {kind}: {n}, e.g. " + " | ".join(examples))
    return "\n".join(lines)


def main(argv=None):
    args = build_parser().parse_args(argv)
    src = get_source(args.source)
    splits = args.splits.split(",") if args.splits else list(src.splits)
    for s in splits:
        if s not in src.splits:
            sys.exit(f"error: source {src.name} has no split {s!r} (has {', '.join(src.splits)})")
    if args.rootnet not in ("auto", "none") and len(splits) != 1:
        sys.exit("error: --rootnet FILE needs exactly one split in --splits")
    for split in splits:
        man = convert_split(src, args.root, args.out, split, rootnet=None if args.rootnet == "none" else args.rootnet,
                            fps=args.fps, shard_size=args.shard_size, shard_count=args.shard_count,
                            workers=args.workers, seed=args.seed, strict=args.strict, verify=args.verify,
                            progress=not args.quiet, mano=args.mano, verify_existing=args.verify_existing,
                            cluster=args.cluster)
        print(summary(split, man), flush=True)


def cli(argv=None) -> int:
    """main() with every failure as one line naming what is wrong (exit 2); --debug: the traceback."""
    return run_cli(main, "python -m shards", argv)  # AnnotationError is a ValueError


if __name__ == "__main__":
    sys.exit(cli())
