"""Serve the emulator at any scale of ``emulator.generator.SCALES``, for the benchmarks.

``cargo-elt emulator serve`` only offers the scales its argument parser lists; the benchmarks also
use ``big`` (five million spans), which the generator knows but the CLI does not offer. This entry
point takes the same options as the CLI (the subset the benchmarks pass) and serves any scale
of ``SCALES``: ``python -m bench.serve --scale big --port 0 --token T --admin``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the CLI-like options and serve in the foreground until terminated."""
    from cargo_elt.emulator import server
    from cargo_elt.emulator.generator import SCALES

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--scale", default="small", choices=sorted(SCALES))
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workspaces", type=int, default=1)
    parser.add_argument("--token", action="append", default=[])
    parser.add_argument("--admin", action="store_true")
    options = parser.parse_args(argv)
    # the server checks the scale against its own list of names; the generator's table is the truth
    server.SCALE_NAMES = tuple(SCALES)  # type: ignore[assignment]
    server.serve_forever(
        server.EmulatorOptions(
            host=options.host,
            port=options.port,
            seed=options.seed,
            scale=options.scale,
            workspaces=options.workspaces,
            tokens=tuple(options.token),
            admin=options.admin,
        )
    )


if __name__ == "__main__":
    main()
