// A real OpenID Connect provider for the tests: panva/oidc-provider (OpenID certified),
// serving discovery and its JWKS over HTTPS and issuing JWT access tokens (RFC 9068) to
// clients with the client-credentials grant.
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"issuer": "https://127.0.0.1:PORT", "port": PORT, "cert_file", "key_file",
//          "jwks_file" (private JWKs; the first key signs), "audience", "scopes": [...],
//          "clients": [{"client_id", "client_secret", "scope"}], "jwks_max_age" (seconds)}
// Prints "OIDC PROVIDER READY <issuer>" once it accepts connections; stops at once on SIGTERM.
import { readFileSync } from "node:fs";
import https from "node:https";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const jwks = JSON.parse(readFileSync(config.jwks_file, "utf8"));
const signingAlg = jwks.keys[0].alg;
const resource = "urn:domicile:api";

const provider = new Provider(config.issuer, {
  jwks,
  scopes: ["openid", ...config.scopes],
  clients: config.clients.map((client) => ({
    client_id: client.client_id,
    client_secret: client.client_secret,
    grant_types: ["client_credentials"],
    response_types: [],
    redirect_uris: [],
    scope: client.scope,
    id_token_signed_response_alg: signingAlg,
  })),
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: false },
    resourceIndicators: {
      enabled: true,
      defaultResource: () => resource,
      useGrantedResource: () => true,
      getResourceServerInfo: () => ({
        scope: config.scopes.join(" "),
        audience: config.audience,
        accessTokenFormat: "jwt",
        accessTokenTTL: 600,
        jwt: { sign: { alg: signingAlg } },
      }),
    },
  },
});

// Identity providers say how long their key set may be cached (Cache-Control: max-age);
// oidc-provider leaves that to the deployment, as a reverse proxy would add it.
provider.use(async (ctx, next) => {
  await next();
  if (ctx.path === "/jwks" && config.jwks_max_age !== undefined) {
    ctx.set("Cache-Control", `public, max-age=${config.jwks_max_age}`);
  }
});

const server = https.createServer(
  { cert: readFileSync(config.cert_file), key: readFileSync(config.key_file) },
  provider.callback(),
);
server.listen(config.port, "127.0.0.1", () => {
  console.log(`OIDC PROVIDER READY ${config.issuer}`);
});
// An outage, for the tests: gone at once, kept-alive connections included.
process.on("SIGTERM", () => {
  server.closeAllConnections();
  process.exit(0);
});
