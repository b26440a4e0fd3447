"""A hot Mini Lambda function in Python: it stays up and handles one event
per line. Each line on stdin is one JSON event; each answer is one line on
stdout, in order. Whatever it writes to stderr while handling an event is
that invocation's logs. Register it with "mode": "hot".

    printf '{"name": "Ada"}\n{"name": "Bo"}\n' | python3 hello-hot.py
"""

import json
import sys


def handle(event):
    name = event.get("name", "World") if isinstance(event, dict) else "World"
    return {"message": "Hello, %s!" % name}


def main():
    for line in sys.stdin:
        try:
            result = handle(json.loads(line))
        except ValueError as err:
            result = {"error": "the event is not JSON: %s" % err}
        print("hello-hot: handled one event", file=sys.stderr, flush=True)
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()  # one answer per event, now: the platform waits for it


if __name__ == "__main__":
    main()
