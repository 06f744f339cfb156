"""The REST API (Quart on trio, served by hypercorn)."""

from abaco.api.app import create_app as create_app
from abaco.api.app import serve_api as serve_api
