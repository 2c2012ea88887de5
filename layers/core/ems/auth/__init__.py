"""Tokens: minting (KMS ES256), verification, revocation, and what each route needs of a token."""
