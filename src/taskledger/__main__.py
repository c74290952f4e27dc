"""Entry point for ``python -m taskledger``; the same command line as the ``taskledger`` script."""

from taskledger.cli import main

if __name__ == "__main__":
    main()
