// A real OAuth 2.1 authorization server for purgewarden's OAuth tests: oidc-provider (a certified
// OpenID provider) on a free loopback port, with client_credentials, resource indicators (RFC 8707:
// access tokens are JWTs whose `aud` is the resource asked for), introspection (RFC 7662) and
// revocation (RFC 7009).
//
// Configured by one JSON document in the environment variable AS_CONFIG:
//   { "signing_key": <private JWK, optional: shared by instances that must sign alike>,
//     "resources": { "<resource URL>": { "scope": "a b c", "format": "jwt" (default) or "opaque" } },
//     "clients": [ { "client_id": "…", "client_secret": "…", "scope": "a b", "ttl": 600 } ] }
// Once listening it prints one JSON line on stdout: { "issuer": "http://127.0.0.1:PORT" }.
import * as crypto from 'node:crypto';
import * as http from 'node:http';

import Provider, { errors } from 'oidc-provider';

const config = JSON.parse(process.env.AS_CONFIG ?? '{}');
const clients = config.clients ?? [];
const resources = config.resources ?? {};
const ttlOf = Object.fromEntries(clients.map((c) => [c.client_id, c.ttl ?? 600]));
const allScopes = [...new Set(Object.values(resources).flatMap((r) => r.scope.split(' ')))];

const signingKey = config.signing_key
  ?? crypto.generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey.export({ format: 'jwk' });
signingKey.kid ??= crypto.createHash('sha256').update(signingKey.n ?? signingKey.x ?? '').digest('base64url').slice(0, 16);
signingKey.use ??= 'sig';
signingKey.alg ??= 'RS256';

const server = http.createServer();
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address();
  const issuer = `http://127.0.0.1:${port}`;
  const provider = new Provider(issuer, {
    clients: clients.map((c) => ({
      client_id: c.client_id,
      client_secret: c.client_secret,
      grant_types: ['client_credentials'],
      redirect_uris: [],
      response_types: [],
      ...(c.scope ? { scope: c.scope } : {}),
      token_endpoint_auth_method: 'client_secret_basic',
    })),
    jwks: { keys: [signingKey] },
    scopes: ['openid', ...allScopes],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: true },
      revocation: { enabled: true },
      resourceIndicators: {
        enabled: true,
        defaultResource: async (_ctx, _client, oneOf) => oneOf,
        useGrantedResource: async () => true,
        getResourceServerInfo: async (_ctx, resource, client) => {
          if (!(resource in resources)) {
            throw new errors.InvalidTarget(`unknown resource ${resource}`);
          }
          return {
            scope: resources[resource].scope,
            audience: resource,
            accessTokenTTL: ttlOf[client.clientId] ?? 600,
            // Opaque tokens can be revoked (JWTs cannot): an introspecting resource server sees it.
            ...(resources[resource].format === 'opaque'
              ? { accessTokenFormat: 'opaque' }
              : { accessTokenFormat: 'jwt', jwt: { sign: { alg: signingKey.alg } } }),
          };
        },
      },
    },
  });
  provider.on('server_error', (_ctx, error) => console.error('server_error', error));
  server.on('request', provider.callback());
  process.stdout.write(`${JSON.stringify({ issuer })}\n`);
});

for (const signal of ['SIGTERM', 'SIGINT']) {
  process.on(signal, () => server.close(() => process.exit(0)));
}
