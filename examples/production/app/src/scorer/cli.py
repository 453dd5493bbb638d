"""`scorer VALUE`: what the handler logs, on the command line."""

import argparse

import requests

from scorer import describe


def main() -> None:
    parser = argparse.ArgumentParser(prog="scorer", description=__doc__)
    parser.add_argument("value", type=int)
    parser.add_argument("--versions", action="store_true", help="also print the library versions")
    args = parser.parse_args()
    print(describe(args.value))
    if args.versions:
        import humanize

        print(f"requests {requests.__version__}, humanize {humanize.__version__}")
