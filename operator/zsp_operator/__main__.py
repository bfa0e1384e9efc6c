"""`python -m zsp_operator` runs the same command line as `zsp`."""

from zsp_operator.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
