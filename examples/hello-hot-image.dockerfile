# The hot Python sample: one event per line in, one result line out.
# Build it from the repository root:
#
#   docker build -f examples/hello-hot-image.dockerfile -t hello-hot-py examples
#
# BASE can name any image with python3 on its PATH that is present locally.
ARG BASE=python:3.9-alpine
FROM ${BASE}
COPY hello-hot.py /function/hello-hot.py
USER 65534:65534
ENTRYPOINT ["python3", "/function/hello-hot.py"]
