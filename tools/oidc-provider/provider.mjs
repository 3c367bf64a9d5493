// A real OpenID Connect provider for the tests: panva/oidc-provider (OpenID certified),
// serving discovery and its JWKS over HTTPS and issuing JWT access tokens (RFC 9068) to
// clients with the client-credentials grant, and to web clients with the authorization code
// flow (its development login form: any password; no consent screen: each account is granted
// the scopes `accounts` lists for it, the rest of what it asks for is refused), and ends
// their sessions at `/session/end` (RP-initiated logout, after a confirmation page).
//
//   node provider.mjs CONFIG.json
//
// CONFIG: {"issuer": "https://127.0.0.1:PORT", "port": PORT, "cert_file", "key_file",
//          "jwks_file" (private JWKs; the first key signs), "audience", "scopes": [...],
//          "clients": [{"client_id", "client_secret", "scope"}], "jwks_max_age" (seconds),
//          "web_clients": [{"client_id", "client_secret", "redirect_uri",
//                           "post_logout_redirect_uri" (optional)}],
//          "accounts": {"login": "scope scope ..."}}
// Prints "OIDC PROVIDER READY <issuer>" once it accepts connections; stops at once on SIGTERM.
import { readFileSync } from "node:fs";
import https from "node:https";
import Provider from "oidc-provider";

const config = JSON.parse(readFileSync(process.argv[2], "utf8"));
const jwks = JSON.parse(readFileSync(config.jwks_file, "utf8"));
const signingAlg = jwks.keys[0].alg;
const resource = "urn:domicile:api";
const webClients = config.web_clients ?? [];
const webClientIds = new Set(webClients.map((client) => client.client_id));
const accounts = config.accounts ?? {};

const provider = new Provider(config.issuer, {
  jwks,
  scopes: ["openid", ...config.scopes],
  clients: [
    ...config.clients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      grant_types: ["client_credentials"],
      response_types: [],
      redirect_uris: [],
      scope: client.scope,
      id_token_signed_response_alg: signingAlg,
    })),
    ...webClients.map((client) => ({
      client_id: client.client_id,
      client_secret: client.client_secret,
      grant_types: ["authorization_code"],
      response_types: ["code"],
      redirect_uris: [client.redirect_uri],
      post_logout_redirect_uris: client.post_logout_redirect_uri ? [client.post_logout_redirect_uri] : [],
      scope: ["openid", ...config.scopes].join(" "),
      id_token_signed_response_alg: signingAlg,
    })),
  ],
  // A web client's grant: `openid` and the account's scopes; the other scopes it asked for
  // are recorded as refused, so no consent screen is needed.
  async loadExistingGrant(ctx) {
    const grantId = ctx.oidc.result?.consent?.grantId || ctx.oidc.session.grantIdFor(ctx.oidc.client.clientId);
    if (grantId) return ctx.oidc.provider.Grant.find(grantId);
    const accountId = ctx.oidc.session.accountId;
    if (!accountId || !webClientIds.has(ctx.oidc.client.clientId)) return undefined;
    const granted = (accounts[accountId] ?? "").split(" ").filter(Boolean);
    const refused = config.scopes.filter((scope) => !granted.includes(scope));
    const grant = new ctx.oidc.provider.Grant({ clientId: ctx.oidc.client.clientId, accountId });
    // The API scopes are both the OP's (asked for beside `openid`) and the resource server's.
    grant.addOIDCScope(["openid", ...granted].join(" "));
    if (granted.length) grant.addResourceScope(resource, granted.join(" "));
    if (refused.length) {
      grant.rejectOIDCScope(refused.join(" "));
      grant.rejectResourceScope(resource, refused.join(" "));
    }
    await grant.save();
    return grant;
  },
  features: {
    clientCredentials: { enabled: true },
    devInteractions: { enabled: webClients.length > 0 },
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
