"""Verify an offergate token offline, as a partner would, with PyJWT.

    pip install "pyjwt[crypto]"
    python3 examples/verify_token.py http://127.0.0.1:8080 "$TOKEN"

The public keys come from the JWKS (cache them; refetch on an unknown kid).
Verification pins EdDSA and checks the signature, exp, nbf, iss and aud.
Whether the token is still unredeemed is the service's to say:
POST /v1/tokens/validate with a partner key.
"""

import sys

import jwt

base_url, token = sys.argv[1], sys.argv[2]
jwks = jwt.PyJWKClient(f"{base_url}/.well-known/jwks.json")
key = jwks.get_signing_key_from_jwt(token)
claims = jwt.decode(
    token,
    key,
    algorithms=["EdDSA"],
    audience="offergate-offers",
    issuer="offergate",
    options={"require": ["exp", "nbf", "iat", "iss", "aud", "sub", "jti"]},
)
print(f"valid token {claims['jti']} for offer {claims['offer_id']} ({claims['community']}), expires {claims['exp']}")
