"""``python -m abaco.events``: run the events actor."""

from abaco.events.delivery import main

main()
