"""Small bundles standing in for the Docker images Abaco's tests run.

Each is one Python module whose ``handle(message)`` does what the image did, under the
image's own name (with a version, as bundle references need one).
"""

from __future__ import annotations

#: jstubbs/abaco_test and abacosamples/test: print the message and the environment.
TEST_SOURCE = b"""
import os


def handle(message):
    print(f"Contents of MSG: {message}")
    print("Environment:")
    for key, value in sorted(os.environ.items()):
        print(f"{key}={value}")
"""

#: abacosamples/wc: count the words of the message.
WC_SOURCE = b"""
def handle(message):
    print(f"Number of words in MSG: {len(message.split())}")
"""

#: abacosamples/sleep_loop: sleep ``sleep`` seconds ``iterations`` times (a JSON message).
SLEEP_LOOP_SOURCE = b"""
import json
import time


def handle(message):
    spec = json.loads(message) if message else {}
    for iteration in range(int(spec.get("iterations", 1))):
        print(f"iteration {iteration}", flush=True)
        time.sleep(float(spec.get("sleep", 1)))
"""

#: abacosamples/py3_func: call a function sent as a binary message, send its value back.
#: Abaco's image takes cloudpickle; this one takes the function's code object (marshal,
#: the same interpreter runs both sides) and its defaults, pickled with the arguments.
PY3_FUNC_SOURCE = b"""
import marshal
import pickle
import types

from abaco.actors.context import send_result


def handle(message):
    call = pickle.loads(message)
    code = marshal.loads(call["code"])
    func = types.FunctionType(code, {}, code.co_name, call["defaults"])
    send_result(pickle.dumps(func(*call["args"], **call["kwargs"])))
"""

ABACO_TEST = "jstubbs/abaco_test:1.0"
ABACO_TEST2 = "jstubbs/abaco_test2:1.0"
TEST = "abacosamples/test:1.0"
WC = "abacosamples/wc:1.0"
SLEEP_LOOP = "abacosamples/sleep_loop:1.0"
PY3_FUNC = "abacosamples/py3_func:1.0"

#: Every bundle the suite pushes: image -> the source of its module.
BUNDLES = {
    ABACO_TEST: TEST_SOURCE,
    ABACO_TEST2: TEST_SOURCE,
    TEST: TEST_SOURCE,
    WC: WC_SOURCE,
    SLEEP_LOOP: SLEEP_LOOP_SOURCE,
    PY3_FUNC: PY3_FUNC_SOURCE,
}
