# The Mini Lambda server as an image: two static binaries on scratch, run
# as a non-root user, the state in a volume, the host's Docker engine
# through its mounted socket. Nothing is pulled: build the binaries first,
# from the repository root, then the image:
#
#   CGO_ENABLED=0 go build -o minilambda . && CGO_ENABLED=0 go build -o minilambda-init ./runner/agent/init
#   docker build -t minilambda .
#
# and run it as the "Server image" section of docs/operations.md shows. Inside its
# container it listens on all interfaces, so it requires MINILAMBDA_TOKEN.
FROM scratch
COPY minilambda minilambda-init /
COPY --chown=65532:65532 .ci/image/ /
ENV MINILAMBDA_ADDR=0.0.0.0:8300 \
    MINILAMBDA_DB=/var/lib/minilambda/events.db \
    MINILAMBDA_INIT=/minilambda-init \
    TMPDIR=/var/lib/minilambda/tmp
USER 65532:65532
VOLUME /var/lib/minilambda
EXPOSE 8300
ENTRYPOINT ["/minilambda"]
CMD ["serve"]
