# Container build for the cloakgate key service under SCONE (SGX). Build on a machine with access to
# the SCONE curated images; the enclave's MRENCLAVE goes into scone-session.yaml and the gateway policy.
FROM registry.scontain.com/sconecuratedimages/apps:python-3.11-alpine

ENV SCONE_HEAP=1G SCONE_MODE=hw PYTHONDONTWRITEBYTECODE=1
WORKDIR /opt/cloakgate
COPY pyproject.toml README.md ./
COPY keys ./keys
COPY addons/cloakgate ./addons/cloakgate
RUN pip install --no-cache-dir . \
 && mkdir -p /sealed/state /fspf \
 && scone fspf create /fspf/fs.fspf \
 && scone fspf addr /fspf/fs.fspf / --not-protected --kernel / \
 && scone fspf addr /fspf/fs.fspf /usr/lib/python3.11 --authenticated --kernel /usr/lib/python3.11 \
 && scone fspf addf /fspf/fs.fspf /usr/lib/python3.11 /usr/lib/python3.11 \
 && scone fspf addr /fspf/fs.fspf /sealed --encrypted --kernel /sealed \
 && scone fspf encrypt /fspf/fs.fspf

EXPOSE 8443
ENTRYPOINT ["python3", "-m", "cloakgate_keys.service_cli", "serve", "--state", "/sealed/state", "--listen", "0.0.0.0:8443"]
