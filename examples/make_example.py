"""Write the example checkpoints shipped in examples/ (or larger ones for experiments).

python examples/make_example.py                       # both shipped examples, as committed
python examples/make_example.py OUT --sound --layers 16 --hidden 1024 --shards 4
"""

from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), ".."))

from nemoverify.testing.synthetic import Spec, write_checkpoint  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
SHIPPED = {
    "nano-12b-v2-vl-tiny": Spec(),
    "nano-omni-tiny": Spec(sound=True, extras=True, seed=1),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("out", nargs="?", help="output directory (default: regenerate the shipped examples)")
    parser.add_argument("--sound", action="store_true", help="include the Omni sound encoder (all four components)")
    parser.add_argument("--extras", action="store_true", help="include names vLLM leaves unclaimed")
    parser.add_argument("--layers", type=int, default=Spec.layers)
    parser.add_argument("--hidden", type=int, default=Spec.hidden)
    parser.add_argument("--ffn", type=int, default=Spec.ffn)
    parser.add_argument("--experts", type=int, default=0)
    parser.add_argument("--quant", choices=["bf16", "fp8", "nvfp4"], default="bf16")
    parser.add_argument("--shards", type=int, default=Spec.shards)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.out is None:
        for name, spec in SHIPPED.items():
            write_checkpoint(os.path.join(HERE, name), spec)
            print(f"wrote {os.path.join(HERE, name)}")
        return
    spec = Spec(
        layers=args.layers,
        hidden=args.hidden,
        ffn=args.ffn,
        experts=args.experts,
        sound=args.sound,
        extras=args.extras,
        quant=args.quant,
        shards=args.shards,
        seed=args.seed,
    )
    write_checkpoint(args.out, spec)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
