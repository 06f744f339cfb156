"""Make ``python -m abaco`` run the ``abaco`` command."""

from abaco.cli import main

main()
