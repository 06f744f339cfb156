"""``python -m abaco.health``: run the health supervisor."""

from abaco.health.supervisor import main

main()
