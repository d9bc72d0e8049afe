"""Publishing: login, push, multi-platform tags and the SBOM, through the ecosystem's own tools.

rpibuild does not speak the registry's HTTP API itself. The engine pushes (docker-py's public
``APIClient.push``) and reads digests and platforms back (``inspect_distribution``); buildx
makes multi-platform lists (``imagetools create``) and reads raw manifests
(``imagetools inspect --raw``); ``docker login --password-stdin`` checks and stores
credentials in docker's own store or credential helper; the oras library attaches the SBOM
and asks the registry why an upload failed when the engine only says "HTTP 500".

- ``errors``: the failure classes and the one place tool messages become them (cause + fix).
- ``target``: registry, namespace and reference names (pure).
- ``tools``: the docker / buildx CLI calls (JSON or raw output only, secrets on stdin).
- ``transport``: TCP and TLS reachability, checked with rpibuild's own trust settings.
- ``diagnose``: why an upload failed (a full disk), asked of the registry through oras.
- ``registry``: login, push with retries and verification, multi-platform tags, doctor.
"""
