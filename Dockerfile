# The Action's image. The runner builds it at the start of every job that uses the action, so it is one small
# step over an official Python image: a venv holding only what entrypoint.py imports, and the package itself.
# BASE_IMAGE is an argument so that tests can build this file unchanged from a stand-in base.
ARG BASE_IMAGE=python:3.11.14-slim-bookworm@sha256:65a93d69fa75478d554f4ad27c85c1e69fa184956261b4301ebaf6dbb0a3543d
FROM ${BASE_IMAGE}

# actions-toolkit without the PyGithub it declares (unused, and ten times its size); requests and its own
# dependencies because actions_toolkit.core imports it (entrypoint.py defers loading it). The base's pip
# installs into the venv, so the venv needs no pip of its own.
RUN python3 -m venv --without-pip /opt/oci-tar-builder \
    && python3 -m pip --python /opt/oci-tar-builder/bin/python install \
        --no-cache-dir --no-deps --disable-pip-version-check --no-input \
        actions-toolkit==0.1.15 \
        PyYAML==6.0.4 \
        requests==2.34.2 \
        urllib3==2.8.0 \
        idna==3.20 \
        certifi==2026.10.19.post1 \
        charset-normalizer==3.5.3

COPY action.yml entrypoint.py /opt/oci-tar-builder/app/
COPY oci_builder/ /opt/oci-tar-builder/app/oci_builder/
RUN /opt/oci-tar-builder/bin/python -m compileall -q /opt/oci-tar-builder/app

ENV PYTHONUNBUFFERED=1
# No USER (the runner expects root) and no WORKDIR (the runner passes --workdir /github/workspace).
ENTRYPOINT ["/opt/oci-tar-builder/bin/python", "/opt/oci-tar-builder/app/entrypoint.py"]
