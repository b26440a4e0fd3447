"""A sample Mini Lambda function.

The event arrives as JSON on stdin; the result is the JSON written to
stdout; anything written to stderr becomes the invocation's logs. Exit code 0
means success.

    echo '{"name": "Ada"}' | python3 hello.py
    {"message": "Hello, Ada!"}
"""

import json
import sys


def handle(event):
    name = "World"
    if isinstance(event, dict) and event.get("name"):
        name = str(event["name"])
    return {"message": "Hello, %s!" % name}


def main():
    raw = sys.stdin.read()
    try:
        event = json.loads(raw) if raw.strip() else {}
    except ValueError as err:
        print("hello: the event is not JSON: %s" % err, file=sys.stderr)
        return 1
    print("hello: greeting %r" % (event.get("name") if isinstance(event, dict) else None), file=sys.stderr)
    json.dump(handle(event), sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
