# The Python sample function. Build it from the repository root:
#
#   docker build -f examples/hello-image.dockerfile -t hello examples
#
# BASE can name any image with python3 on its PATH that is present locally,
# e.g. --build-arg BASE=python:3.12-alpine.
ARG BASE=python:3.9-alpine
FROM ${BASE}
COPY hello.py /function/hello.py
# Any unprivileged uid: numeric, so the base image needs no passwd entry.
USER 65534:65534
# Exec form: no shell between the platform and the function.
ENTRYPOINT ["python3", "/function/hello.py"]
