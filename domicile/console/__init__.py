"""The auditor and governance console, served by `domicile serve` on its own listener.

- `sessions`: server-side sessions (the browser holds only an opaque id) and one-time
  sign-in links;
- `api`: the JSON read API under `/api/v1/...`, each route one RPC of the public API, called
  in process on the same servicers gRPC uses and answered in the proto3 JSON mapping;
- `web`: the aiohttp application -- security headers, sign-in and sign-out, session and CSRF
  checks, the built single-page app (console-web/) and its assets.

See docs/console.md.
"""
